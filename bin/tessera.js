#!/usr/bin/env node
// Runs the TypeScript CLI directly (Node 24 strips types). npm puts the project's Node 24
// (the `node` dependency) first on PATH for `npx tessera` and npm scripts.
import '../src/cli.ts';

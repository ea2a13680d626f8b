// Types of eslint/tessera-rules.js for the test that runs it (test/unit/lint-rules.test.ts).
import type { ESLint } from 'eslint';

declare const plugin: ESLint.Plugin;
export default plugin;
export declare const LAYERS: Record<string, readonly string[] | '*'>;

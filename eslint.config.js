import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import tessera from './eslint/tessera-rules.js';

export default tseslint.config(
  { ignores: ['node_modules/**', '**/node_modules/**', 'data/**', 'coverage/**', 'web/**/*.min.js', 'packages/*/dist/**', 'web/admin/dist/**', 'test/fixtures/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      // Fastify handlers and plugins are async by contract, whether or not they await.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // The layering of docs/architecture.md §1, and no import cycle (eslint/tessera-rules.js).
    files: ['src/**/*.ts'],
    plugins: { tessera },
    rules: { 'tessera/layers': 'error', 'tessera/no-cycle': 'error' },
  },
  {
    // Routes end sessions through the session manager (src/sessions/app-sessions.ts), which
    // also clears the caches, emits the events and waits for the feed of ends.
    files: ['src/http/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "CallExpression[callee.object.property.name='store'][callee.property.name=/^(revoke|consumeSession)/]", message: 'End sessions through the session manager (endSession, endUserSessions, endTenantSessions), not the store.' },
        { selector: "CallExpression[callee.name='announceEnded']", message: 'announceEnded belongs to the session manager; call endSession / endUserSessions / endTenantSessions.' },
      ],
    },
  },
  {
    // Tests read JSON answers with `res.json() as Shape`; that is the clearest way to say it.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);

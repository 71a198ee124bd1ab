// Lint rules for the panel's TypeScript: typescript-eslint's recommended set, with
// formatting left to prettier.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'lib/',
      'node_modules/',
      '../jupyter_gov/labextension/',
      '*.js',
      '*.mjs'
    ]
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    files: ['src/**/*.ts'],
    languageOptions: {
      globals: globals.browser,
      parserOptions: {
        project: './tsconfig.json',
        tsconfigRootDir: import.meta.dirname
      }
    },
    rules: {
      '@typescript-eslint/naming-convention': [
        'error',
        {
          selector: 'interface',
          format: ['PascalCase'],
          custom: { regex: '^I[A-Z]', match: true }
        }
      ],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-namespace': 'off',
      '@typescript-eslint/no-unused-vars': ['warn', { args: 'none' }],
      curly: ['error', 'all'],
      // Server data reaches the page as text only (see src/dom.ts): no markup sinks.
      'no-restricted-properties': [
        'error',
        ...['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'srcdoc'].map(
          property => ({
            property,
            message: 'Build nodes with h() from dom.ts: text only.'
          })
        ),
        { object: 'document', property: 'write', message: 'No markup sinks.' },
        {
          property: 'createContextualFragment',
          message: 'No markup sinks.'
        }
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector:
            "Property[key.name=/^(innerHTML|outerHTML|srcdoc)$/], Identifier[name='dangerouslySetInnerHTML']",
          message: 'Build nodes with h() from dom.ts: text only.'
        }
      ],
      'no-restricted-globals': [
        'error',
        { name: 'DOMParser', message: 'No markup sinks.' },
        { name: 'eval', message: 'No code from strings.' }
      ],
      eqeqeq: 'error',
      'prefer-arrow-callback': 'error'
    }
  }
);

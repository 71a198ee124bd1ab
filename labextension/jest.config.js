/**
 * Jest for the sidebar's TypeScript (`jlpm test`, run by `make test` through
 * tests/browser/test_jest.py): ts-jest compiles to CommonJS without type-checking (the
 * build's tsc does that), the DOM comes from jsdom.
 */
module.exports = {
  testEnvironment: 'jsdom',
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
  setupFiles: ['<rootDir>/test/shim.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.test.json' }]
  },
  cacheDirectory: '<rootDir>/node_modules/.cache/jest'
};

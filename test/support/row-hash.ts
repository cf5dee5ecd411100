// Row hashes live in src/embedded/ (the demo compares with them too); tests import them from here.
export * from '../../src/embedded/row-hash.js';

export { waitFor, type WaitOptions } from '../../src/testing/wait.js';

// `virtual-kubelet/testing`: the provider conformance suite, for node:test. A provider outside
// this repository runs it from its own test file:
//
//   import { providerContractSuite } from 'virtual-kubelet/testing';
//   providerContractSuite('my provider', async () => {
//     const provider = new MyProvider();
//     return { provider, close: () => provider.close() };
//   });
export { providerContractSuite } from './provider-contract.js';
export type { ContractSuiteOptions, ProviderUnderTest } from './provider-contract.js';
export { waitFor } from './wait.js';
export type { WaitOptions } from './wait.js';

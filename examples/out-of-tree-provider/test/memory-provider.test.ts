// Runs the conformance suite published by virtual-kubelet against the memory provider, pushed
// (the provider's own notifications) and polled (as the core polls a provider without them).
import { providerContractSuite } from 'virtual-kubelet/testing';
import { MemoryProvider } from '../src/memory-provider.js';

providerContractSuite('memory provider (push)', () => {
  const provider = new MemoryProvider({ nodeName: 'conformance-node' });
  return Promise.resolve({ provider, close: () => provider.close() });
});

providerContractSuite('memory provider (polled)', () => {
  const pushing = new MemoryProvider({ nodeName: 'conformance-node' });
  // The same pods without notifyPods: the suite then reads them as the core's poll adapter does.
  const provider = {
    createPod: pushing.createPod.bind(pushing),
    updatePod: pushing.updatePod.bind(pushing),
    deletePod: pushing.deletePod.bind(pushing),
    getPod: pushing.getPod.bind(pushing),
    getPodStatus: pushing.getPodStatus.bind(pushing),
    getPods: pushing.getPods.bind(pushing),
  };
  return Promise.resolve({ provider, close: () => pushing.close() });
});

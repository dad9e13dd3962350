import type { KubeletServer } from '../api/server.js';
import type { EventRecorder } from '../kube/events.js';
import type { NodeController } from '../node/node-controller.js';
import type { PodController } from '../pods/pod-controller.js';
import { wireNode, type NodeParts, type VirtualNodeOptions } from './wiring.js';

export type { SharedSources, VirtualNodeOptions } from './wiring.js';

/**
 * One virtual node: its Node object and Lease, and the pods bound to it, handed to `provider`.
 * The pod controller starts once the Node is registered.
 */
export class VirtualNode {
  readonly nodeName: string;
  readonly nodeController: NodeController;
  readonly podController: PodController;
  readonly events: EventRecorder;
  /** The kubelet API server, when `api` was given. */
  readonly server: KubeletServer | undefined;
  readonly #parts: NodeParts;

  constructor(options: VirtualNodeOptions) {
    this.nodeName = options.nodeName;
    this.#parts = wireNode(options);
    this.nodeController = this.#parts.nodeController;
    this.podController = this.#parts.podController;
    this.events = this.#parts.events;
    this.server = this.#parts.server;
  }

  /** Resolves when the Node is registered and the pods are reconciled with the provider. */
  async whenReady(): Promise<void> {
    await this.nodeController.whenReady();
    await this.podController.whenReady();
  }

  /**
   * Runs until `signal` aborts; resolves after every loop has stopped. One part failing stops
   * the others, and the run rejects with its error.
   */
  run(signal: AbortSignal): Promise<void> {
    return this.#parts.run(signal);
  }
}

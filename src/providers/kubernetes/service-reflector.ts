/**
 * Service reflection: the Services of a local namespace that holds offloaded pods are created in
 * its remote namespace (see `toRemoteService`), kept equal to the local ones, and deleted when the
 * local one goes, is opted out, or no offloaded pod is left in the namespace. The remote cluster's
 * EndpointSlice controller gives them the remote pods (which carry the local pods' labels) as
 * endpoints, so remote pods reach them by name. Nothing is written to the local cluster: there the
 * EndpointSlice controller already lists offloaded pods under their reported (remote) pod IPs.
 *
 * Only Services this node made (label `virtual-kubelet.io/reflected=true` and its origin-node
 * label) are changed or deleted; a remote Service of the same name is left as it is.
 */
import { errorCode } from '../../errors.js';
import type { KubeClient } from '../../kube/client.js';
import type { Logger } from '../../log.js';
import type { V1Service } from '../../wire.js';
import type { KubernetesConfig } from './config.js';
import { ORIGIN_NODE, REFLECTED, reflectionWanted, toRemoteService } from './translate.js';

export interface ServiceReflectorOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  readonly config: KubernetesConfig;
  readonly logger: Logger;
  /** Creates the remote namespace when missing. */
  readonly ensureNamespace: (namespace: string, signal: AbortSignal) => Promise<void>;
}

/** What the reflector knows of one remote namespace: its Services, by name. */
interface NamespaceState {
  /** Name to the body last written (ours), or `''` for a remote Service we did not make. */
  readonly services: Map<string, string>;
}

const servicesPath = (namespace: string, name?: string): string =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/services${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;

export class ServiceReflector {
  readonly #o: ServiceReflectorOptions;
  readonly #on: boolean;
  readonly #namespaces = new Map<string, NamespaceState>();

  constructor(options: ServiceReflectorOptions) {
    this.#o = options;
    this.#on = options.config.reflect?.includes('Service') ?? false;
  }

  /** Whether Services this reflector made remain in `remoteNamespace`. */
  holds(remoteNamespace: string): boolean {
    const state = this.#namespaces.get(remoteNamespace);
    return state !== undefined && [...state.services.values()].some((body) => body !== '');
  }

  #ours(svc: V1Service | undefined): boolean {
    const labels = svc?.metadata?.labels ?? {};
    return labels[REFLECTED] === 'true' && labels[ORIGIN_NODE] === this.#o.nodeName;
  }

  /** The remote Services of `remoteNamespace` as they should be: name to body. */
  desired(services: readonly V1Service[], remoteNamespace: string): Map<string, V1Service> {
    const out = new Map<string, V1Service>();
    for (const svc of services) {
      if (!reflectionWanted(svc.metadata?.annotations, this.#on)) continue;
      const remote = toRemoteService(svc, {
        config: this.#o.config,
        nodeName: this.#o.nodeName,
        remoteNamespace,
      });
      if (remote) out.set(svc.metadata?.name ?? '', remote);
    }
    return out;
  }

  /**
   * Makes the Services this node reflected into `remoteNamespace` those of `services` (the whole
   * list of the local namespace; `[]` removes every one). The first call for a namespace also
   * removes Services of this node left there by an earlier run.
   */
  async set(
    remoteNamespace: string,
    services: readonly V1Service[],
    signal: AbortSignal,
  ): Promise<void> {
    const client = this.#o.client;
    const want = this.desired(services, remoteNamespace);
    let state = this.#namespaces.get(remoteNamespace);
    if (!state) {
      if (
        want.size === 0 &&
        (await client.get(`/api/v1/namespaces/${encodeURIComponent(remoteNamespace)}`, signal)) ===
          undefined
      )
        return;
      state = { services: new Map() };
      const found = await client.request<{ items?: V1Service[] }>(
        'GET',
        servicesPath(remoteNamespace),
        {
          query: { labelSelector: `${REFLECTED}=true,${ORIGIN_NODE}=${this.#o.nodeName}` },
          signal,
        },
      );
      for (const svc of found.items ?? []) state.services.set(svc.metadata?.name ?? '', '?');
      this.#namespaces.set(remoteNamespace, state);
    }
    if (want.size > 0) await this.#o.ensureNamespace(remoteNamespace, signal);
    for (const [name, body] of want) await this.#write(state, remoteNamespace, name, body, signal);
    for (const [name, written] of [...state.services]) {
      if (want.has(name)) continue;
      if (written !== '') await this.#delete(remoteNamespace, name, signal);
      state.services.delete(name);
    }
    if (state.services.size === 0) this.#namespaces.delete(remoteNamespace);
  }

  async #write(
    state: NamespaceState,
    namespace: string,
    name: string,
    body: V1Service,
    signal: AbortSignal,
  ): Promise<void> {
    const text = JSON.stringify(body);
    const written = state.services.get(name);
    if (written === text || written === '') return;
    const client = this.#o.client;
    try {
      await client.create(servicesPath(namespace), body, signal);
      state.services.set(name, text);
      return;
    } catch (err) {
      if (errorCode(err) !== 'AlreadyExists') throw err;
    }
    const current = await client.get<V1Service>(servicesPath(namespace, name), signal);
    if (current === undefined) throw new Error(`remote Service ${namespace}/${name} vanished`);
    if (!this.#ours(current)) {
      state.services.set(name, '');
      this.#o.logger.info(
        { namespace, name },
        'a remote Service of that name exists: not reflected',
      );
      return;
    }
    // What the remote cluster allocated stays; the type is kept while it allows it.
    const next: V1Service = structuredClone(body);
    next.metadata = { ...next.metadata, resourceVersion: current.metadata?.resourceVersion };
    const kept = current.spec?.type !== 'ExternalName' && next.spec?.type !== 'ExternalName';
    if (kept && next.spec && next.spec.clusterIP !== 'None') {
      next.spec.clusterIP = current.spec?.clusterIP;
      next.spec.clusterIPs = current.spec?.clusterIPs;
    }
    const headless = (svc: V1Service): boolean => svc.spec?.clusterIP === 'None';
    if (kept && headless(current) !== headless(next)) {
      // A cluster IP can be neither added nor taken away: the Service is made again.
      await this.#delete(namespace, name, signal);
      state.services.delete(name);
      await this.#write(state, namespace, name, body, signal);
      return;
    }
    await client.replace(servicesPath(namespace, name), next, signal);
    state.services.set(name, text);
  }

  async #delete(namespace: string, name: string, signal: AbortSignal): Promise<void> {
    try {
      await this.#o.client.delete(servicesPath(namespace, name), undefined, signal);
    } catch (err) {
      if (errorCode(err) !== 'NotFound') throw err;
    }
  }
}

/**
 * Reflection: the config maps, secrets and service accounts that offloaded pods name are
 * created in the remote namespace, updated when their content changes (the core hands the new
 * content to `setPodVolumes`) and deleted once no pod of this node needs them. Remote
 * namespaces are created when missing (the provider removes them again once unused). Objects and namespaces the reflector made carry the
 * label `virtual-kubelet.io/reflected=<node>`; an object of the same name the reflector did not
 * make is used as it is and never changed or deleted.
 */
import { errorCode, errorMessage, unavailable } from '../../errors.js';
import type { KubeClient } from '../../kube/client.js';
import type { Logger } from '../../log.js';
import type { ResolvedVolume } from '../../provider.js';
import type { V1ConfigMap, V1Pod, V1Secret } from '../../wire.js';
import type { KubernetesConfig, ReflectedKind } from './config.js';
import { DEFAULT_REFLECTED_KINDS } from './config.js';
import {
  encodeData,
  ORIGIN_NODE,
  reflectedData,
  REFLECTED,
  reflectionWanted,
} from './translate.js';

export interface ReflectorOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  readonly config: KubernetesConfig;
  readonly logger: Logger;
}

/** The kinds this reflector writes (Services have their own, `service-reflector.ts`). */
type ObjectKind = Exclude<ReflectedKind, 'Service'>;

interface Reflected {
  readonly kind: ObjectKind;
  readonly namespace: string;
  readonly name: string;
  /** What each pod's volume holds, by `<pod uid>/<volume>`; service accounts hold nothing. */
  readonly parts: Map<string, ReadonlyMap<string, Uint8Array>>;
  /** The body last written, to skip writes that change nothing. */
  written: string;
  /** False when an object of that name existed that the reflector did not make. */
  owned: boolean;
}

const PLURAL: Readonly<Record<ObjectKind, string>> = {
  ConfigMap: 'configmaps',
  Secret: 'secrets',
  ServiceAccount: 'serviceaccounts',
};

const objectPath = (kind: ObjectKind, namespace: string, name?: string): string =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/${PLURAL[kind]}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;

export class Reflector {
  readonly #o: ReflectorOptions;
  readonly #kinds: ReadonlySet<ReflectedKind>;
  readonly #objects = new Map<string, Reflected>();
  readonly #namespaces = new Set<string>();
  /** One write at a time per object, in order. */
  readonly #chains = new Map<string, Promise<void>>();

  constructor(options: ReflectorOptions) {
    this.#o = options;
    this.#kinds = new Set(options.config.reflect ?? DEFAULT_REFLECTED_KINDS);
  }

  #labels(): Record<string, string> {
    return { [REFLECTED]: 'true', [ORIGIN_NODE]: this.#o.nodeName };
  }

  /** Creates the remote namespace when missing (once per namespace and provider). */
  async ensureNamespace(namespace: string, signal: AbortSignal): Promise<void> {
    if (this.#namespaces.has(namespace)) return;
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
    const current = await this.#o.client.get<{ metadata?: { deletionTimestamp?: string } }>(
      path,
      signal,
    );
    if (current?.metadata?.deletionTimestamp !== undefined)
      throw unavailable(`the remote namespace ${namespace} is being deleted: retrying`);
    if (current === undefined) {
      try {
        await this.#o.client.create(
          '/api/v1/namespaces',
          { metadata: { name: namespace, labels: this.#labels() } },
          signal,
        );
        this.#o.logger.info({ namespace }, 'remote namespace created');
      } catch (err) {
        if (errorCode(err) !== 'AlreadyExists') throw err;
      }
    }
    this.#namespaces.add(namespace);
  }

  /** Forgets that `namespace` exists: the next `ensureNamespace` reads it again. */
  forgetNamespace(namespace: string): void {
    this.#namespaces.delete(namespace);
  }

  /** With `serviceAccount: Mirror`, the pod's service account exists in `namespace`. */
  async ensureServiceAccount(pod: V1Pod, namespace: string, signal: AbortSignal): Promise<void> {
    if (!this.#kinds.has('ServiceAccount')) return;
    if ((this.#o.config.serviceAccount ?? 'Mirror') !== 'Mirror') return;
    const name = pod.spec?.serviceAccountName ?? 'default';
    // Every namespace gets its `default` account from the remote controller manager.
    if (name === 'default') return;
    const obj = this.#object('ServiceAccount', namespace, name);
    obj.parts.set(pod.metadata?.uid ?? '', new Map());
    await this.#write(obj, signal);
  }

  /**
   * Reflects the config maps and secrets behind `volumes` of `pod` into `namespace`. Resolves to
   * the sources left out (see `reflectedData`).
   */
  async reflect(
    pod: V1Pod,
    namespace: string,
    volumes: readonly ResolvedVolume[],
    signal: AbortSignal,
  ): Promise<string[]> {
    const uid = pod.metadata?.uid ?? '';
    const { objects, skipped } = reflectedData(pod, volumes);
    const touched: Reflected[] = [];
    const dropped: Reflected[] = [];
    for (const o of objects) {
      const annotations = volumes
        .find((v) => v.name === o.volume)
        ?.sources?.find((x) => x.kind === o.kind && x.name === o.name)?.annotations;
      if (!reflectionWanted(annotations, this.#kinds.has(o.kind))) {
        // Opted out (perhaps since it was reflected): this pod no longer holds a copy.
        const known = this.#objects.get(`${o.kind}/${namespace}/${o.name}`);
        if (known?.parts.delete(`${uid}/${o.volume}`) === true) dropped.push(known);
        continue;
      }
      const obj = this.#object(o.kind, namespace, o.name);
      obj.parts.set(`${uid}/${o.volume}`, o.data);
      touched.push(obj);
    }
    for (const obj of new Set(touched)) await this.#write(obj, signal);
    for (const obj of new Set(dropped)) await this.#settle(obj, signal);
    return skipped;
  }

  /** Forgets what pod `uid` needed; objects no pod needs any more are deleted. */
  async release(uid: string, signal: AbortSignal): Promise<void> {
    for (const obj of [...this.#objects.values()]) {
      const before = obj.parts.size;
      for (const part of [...obj.parts.keys()])
        if (part === uid || part.startsWith(`${uid}/`)) obj.parts.delete(part);
      if (obj.parts.size === before) continue;
      await this.#settle(obj, signal);
    }
  }

  /** After `obj` lost parts: written again, or deleted when no pod needs it any more. */
  async #settle(obj: Reflected, signal: AbortSignal): Promise<void> {
    if (obj.parts.size > 0) {
      await this.#write(obj, signal);
      return;
    }
    const key = `${obj.kind}/${obj.namespace}/${obj.name}`;
    this.#objects.delete(key);
    if (obj.owned) await this.#chain(key, () => this.#delete(obj, signal));
  }

  /** Whether this reflector still holds objects in `namespace`. */
  holds(namespace: string): boolean {
    for (const obj of this.#objects.values()) if (obj.namespace === namespace) return true;
    return false;
  }

  #object(kind: ObjectKind, namespace: string, name: string): Reflected {
    const key = `${kind}/${namespace}/${name}`;
    let obj = this.#objects.get(key);
    if (!obj) {
      obj = { kind, namespace, name, parts: new Map(), written: '', owned: true };
      this.#objects.set(key, obj);
    }
    return obj;
  }

  #chain(key: string, fn: () => Promise<void>): Promise<void> {
    const next = (this.#chains.get(key) ?? Promise.resolve()).catch(() => undefined).then(fn);
    this.#chains.set(key, next);
    void next
      .finally(() => {
        if (this.#chains.get(key) === next) this.#chains.delete(key);
      })
      .catch(() => undefined);
    return next;
  }

  #body(obj: Reflected): V1ConfigMap | V1Secret | { metadata: object } {
    const metadata = { name: obj.name, namespace: obj.namespace, labels: this.#labels() };
    if (obj.kind === 'ServiceAccount')
      return { apiVersion: 'v1', kind: 'ServiceAccount', metadata };
    const merged = new Map<string, Uint8Array>();
    for (const part of obj.parts.values()) for (const [k, v] of part) merged.set(k, v);
    const data = encodeData(obj.kind, merged);
    return obj.kind === 'Secret'
      ? { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata, ...data }
      : { apiVersion: 'v1', kind: 'ConfigMap', metadata, ...data };
  }

  #write(obj: Reflected, signal: AbortSignal): Promise<void> {
    return this.#chain(`${obj.kind}/${obj.namespace}/${obj.name}`, async () => {
      if (!obj.owned) return;
      const body = this.#body(obj);
      const text = JSON.stringify(body);
      if (text === obj.written) return;
      const client = this.#o.client;
      try {
        await client.create(objectPath(obj.kind, obj.namespace), body, signal);
      } catch (err) {
        if (errorCode(err) !== 'AlreadyExists') throw err;
        const current = await client.get<{ metadata?: { labels?: Record<string, string> } }>(
          objectPath(obj.kind, obj.namespace, obj.name),
          signal,
        );
        const labels = current?.metadata?.labels ?? {};
        if (labels[REFLECTED] !== 'true' || labels[ORIGIN_NODE] !== this.#o.nodeName) {
          // The remote cluster's own object (or another node's): used as it is.
          obj.owned = false;
          this.#o.logger.info(
            { kind: obj.kind, namespace: obj.namespace, name: obj.name },
            'a remote object of that name exists: not reflected',
          );
          return;
        }
        if (obj.kind !== 'ServiceAccount')
          await client.replace(objectPath(obj.kind, obj.namespace, obj.name), body, signal);
      }
      obj.written = text;
    });
  }

  async #delete(obj: Reflected, signal: AbortSignal): Promise<void> {
    try {
      await this.#o.client.delete(objectPath(obj.kind, obj.namespace, obj.name), undefined, signal);
    } catch (err) {
      if (errorCode(err) !== 'NotFound')
        this.#o.logger.warn(
          { kind: obj.kind, name: obj.name, err: errorMessage(err) },
          'could not delete a reflected object',
        );
    }
  }
}

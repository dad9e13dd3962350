/**
 * The three `Reflect` metadata functions that `@peculiar/x509`'s dependency injection container
 * (tsyringe) looks for when it loads. Installed only when no metadata polyfill is present, so a
 * program that loads `reflect-metadata` itself keeps its own. Import this module before
 * `@peculiar/x509`: ES modules evaluate their imports in order.
 */

type MetadataKey = unknown;
type Property = string | symbol | undefined;

interface ReflectMetadata {
  defineMetadata(key: MetadataKey, value: unknown, target: object, property?: Property): void;
  getOwnMetadata(key: MetadataKey, target: object, property?: Property): unknown;
  getMetadata(key: MetadataKey, target: object, property?: Property): unknown;
}

const reflect = Reflect as typeof Reflect & Partial<ReflectMetadata>;

if (typeof reflect.getMetadata !== 'function') {
  const store = new WeakMap<object, Map<Property, Map<MetadataKey, unknown>>>();
  const own = (target: object, property: Property, create: boolean) => {
    let byProperty = store.get(target);
    if (!byProperty) {
      if (!create) return undefined;
      byProperty = new Map();
      store.set(target, byProperty);
    }
    let entries = byProperty.get(property);
    if (!entries && create) {
      entries = new Map();
      byProperty.set(property, entries);
    }
    return entries;
  };
  const metadata: ReflectMetadata = {
    defineMetadata(key, value, target, property) {
      own(target, property, true)?.set(key, value);
    },
    getOwnMetadata(key, target, property) {
      return own(target, property, false)?.get(key);
    },
    getMetadata(key, target, property) {
      // Inherited metadata: walk the prototype chain, as the decorator metadata proposal does.
      for (
        let t: object | null = target;
        t !== null;
        t = Object.getPrototypeOf(t) as object | null
      ) {
        const entries = own(t, property, false);
        if (entries?.has(key)) return entries.get(key);
      }
      return undefined;
    },
  };
  Object.assign(reflect, metadata);
}

export {};

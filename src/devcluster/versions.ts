/**
 * The control-plane versions the dev cluster builds. They must match the `require` lines of
 * `modules/kubernetes/go.mod` and `modules/etcd/go.mod` (a unit test checks this).
 */
export const KUBERNETES_VERSION = 'v1.37.2';
export const ETCD_VERSION = 'v3.6.16';

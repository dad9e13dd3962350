/**
 * The control-plane versions the dev cluster builds. They must match the `require` lines of
 * `modules/kubernetes/go.mod` (and `modules/kube-proxy/go.mod`), `modules/etcd/go.mod`,
 * `modules/metrics-server/go.mod` and `modules/coredns/go.mod` (a unit test checks this).
 */
export const KUBERNETES_VERSION = 'v1.37.2';
export const ETCD_VERSION = 'v3.6.16';
export const METRICS_SERVER_VERSION = 'v0.9.0';
export const COREDNS_VERSION = 'v1.15.0';

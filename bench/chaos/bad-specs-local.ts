// Pod specs that a real API server accepts (or should refuse) and a node must survive, each
// failing in a way the pod's owner can see. The suite's own small table; a larger one may take
// its place (bench/chaos/bad-specs.ts, `BAD_POD_SPECS`, read first when present).

/** One bad pod: its name, what is wrong with it, and the pod (without `spec.nodeName`). */
export interface BadPodSpec {
  readonly name: string;
  readonly what: string;
  readonly pod: {
    readonly metadata?: Readonly<Record<string, unknown>>;
    readonly spec: Readonly<Record<string, unknown>>;
  };
}

const IMAGE = 'registry.k8s.io/pause:3.10';

const one = (container: Readonly<Record<string, unknown>>, spec = {}): BadPodSpec['pod'] => ({
  spec: { containers: [{ name: 'c', image: IMAGE, ...container }], ...spec },
});

/** The names of config maps and secrets none of these pods will find. */
const ABSENT = 'chaos-absent';

export const LOCAL_BAD_POD_SPECS: readonly BadPodSpec[] = [
  {
    name: 'env-missing-configmap',
    what: 'an env var from a key of a config map that does not exist',
    pod: one({
      env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: ABSENT, key: 'k' } } }],
    }),
  },
  {
    name: 'env-missing-secret',
    what: 'an env var from a key of a secret that does not exist',
    pod: one({ env: [{ name: 'X', valueFrom: { secretKeyRef: { name: ABSENT, key: 'k' } } }] }),
  },
  {
    name: 'envfrom-missing-configmap',
    what: 'envFrom a config map that does not exist',
    pod: one({ envFrom: [{ configMapRef: { name: ABSENT } }] }),
  },
  {
    name: 'volume-missing-secret',
    what: 'a secret volume of a secret that does not exist',
    pod: one(
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
      { volumes: [{ name: 'v', secret: { secretName: ABSENT } }] },
    ),
  },
  {
    name: 'volume-missing-configmap',
    what: 'a config map volume of a config map that does not exist',
    pod: one(
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
      { volumes: [{ name: 'v', configMap: { name: ABSENT } }] },
    ),
  },
  {
    name: 'projected-missing-secret',
    what: 'a projected volume with a secret that does not exist',
    pod: one(
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
      { volumes: [{ name: 'v', projected: { sources: [{ secret: { name: ABSENT } }] } }] },
    ),
  },
  {
    name: 'active-deadline',
    what: 'activeDeadlineSeconds 1: the pod must end Failed, DeadlineExceeded',
    pod: one({}, { activeDeadlineSeconds: 1 }),
  },
  {
    name: 'missing-service-account',
    what: 'a service account that does not exist (the ServiceAccount admission refuses it)',
    pod: one({}, { serviceAccountName: ABSENT }),
  },
  {
    name: 'blank-image',
    what: 'an image of blanks (validation refuses it)',
    pod: one({ image: '   ' }),
  },
  {
    name: 'crashing-container',
    what: 'a container that exits 1 at once, restartPolicy Never',
    pod: {
      spec: {
        restartPolicy: 'Never',
        containers: [{ name: 'crasher', image: IMAGE }],
      },
    },
  },
];

/** The mock's behaviour for the containers of the table (by container name). */
export const LOCAL_MOCK_CONTAINERS = { crasher: { exitAfterSeconds: 0, exitCode: 1 } } as const;

/**
 * A container's `securityContext` as a host process gets it: the user and groups, the
 * capability bounding set, `no_new_privs`, and the kubelet's `runAsNonRoot` check. The
 * process is started with `setpriv` (util-linux), whose arguments are built here.
 *
 * Capabilities follow what containerd and Docker give a container: the default set below, a
 * `drop: [ALL]` empties it, an `add: [ALL]` fills it, then single names are added and dropped
 * (so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps one). They bound the process; the
 * inheritable and ambient sets are emptied, as containerd does, so a process that runs as a
 * user other than root has no capabilities once it execs, whatever the bounding set says.
 * `privileged: true` leaves the bounding set whole.
 */
import type { V1Container, V1Pod } from '../../wire.js';

/** `securityContext.capabilities` of a container. */
export type Capabilities = NonNullable<NonNullable<V1Container['securityContext']>['capabilities']>;

/** The capabilities a container runtime gives a container by default (containerd, Docker). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
];

/** Every capability Linux knows (capability.h, in number order up to CHECKPOINT_RESTORE). */
export const ALL_CAPABILITIES: readonly string[] = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
];

/** The container's security settings with the pod's filled in where the container sets none. */
export interface EffectiveSecurity {
  readonly runAsUser?: number;
  readonly runAsGroup?: number;
  readonly runAsNonRoot?: boolean;
  /** Pod level only. */
  readonly supplementalGroups: readonly number[];
  /** Pod level only. */
  readonly fsGroup?: number;
  readonly privileged: boolean;
  readonly allowPrivilegeEscalation?: boolean;
  readonly readOnlyRootFilesystem: boolean;
  readonly capabilities?: Capabilities;
}

/** As the kubelet's DetermineEffectiveSecurityContext: the container's fields over the pod's. */
export function effectiveSecurity(pod: V1Pod, container: V1Container): EffectiveSecurity {
  const p = pod.spec?.securityContext ?? {};
  const c = container.securityContext ?? {};
  const runAsUser = c.runAsUser ?? p.runAsUser;
  const runAsGroup = c.runAsGroup ?? p.runAsGroup;
  const runAsNonRoot = c.runAsNonRoot ?? p.runAsNonRoot;
  return {
    ...(runAsUser !== undefined ? { runAsUser } : {}),
    ...(runAsGroup !== undefined ? { runAsGroup } : {}),
    ...(runAsNonRoot !== undefined ? { runAsNonRoot } : {}),
    supplementalGroups: p.supplementalGroups ?? [],
    ...(p.fsGroup !== undefined ? { fsGroup: p.fsGroup } : {}),
    privileged: c.privileged === true,
    ...(c.allowPrivilegeEscalation !== undefined
      ? { allowPrivilegeEscalation: c.allowPrivilegeEscalation }
      : {}),
    readOnlyRootFilesystem: c.readOnlyRootFilesystem === true,
    ...(c.capabilities !== undefined ? { capabilities: c.capabilities } : {}),
  };
}

/**
 * Why the kubelet would not start `container` (verifyRunAsNonRoot, in its own words), or
 * undefined. `imageUid` is the user the process runs as when it sets none: the agent's.
 */
export function runAsNonRootProblem(
  pod: V1Pod,
  container: V1Container,
  imageUid: number,
): string | undefined {
  const sc = effectiveSecurity(pod, container);
  if (sc.runAsNonRoot !== true) return undefined;
  const meta = pod.metadata;
  const where = `(pod: "${meta?.name ?? ''}_${meta?.namespace ?? ''}(${meta?.uid ?? ''})", container: ${container.name})`;
  if (sc.runAsUser !== undefined) {
    return sc.runAsUser === 0 ? `container's runAsUser breaks non-root policy ${where}` : undefined;
  }
  return imageUid === 0
    ? `container has runAsNonRoot and image will run as root ${where}`
    : undefined;
}

const capName = (name: string): string => name.toUpperCase().replace(/^CAP_/, '');

/**
 * The capability bounding set of a container that is not privileged, or an error naming a
 * capability Linux does not know (a runtime refuses to create such a container).
 */
export function capabilitySet(caps: Capabilities | undefined): string[] | { error: string } {
  const add = (caps?.add ?? []).map(capName);
  const drop = (caps?.drop ?? []).map(capName);
  for (const name of [...add, ...drop]) {
    if (name !== 'ALL' && !ALL_CAPABILITIES.includes(name))
      return { error: `unknown capability "CAP_${name}"` };
  }
  let set = new Set(DEFAULT_CAPABILITIES);
  if (add.includes('ALL')) set = new Set(ALL_CAPABILITIES);
  if (drop.includes('ALL')) set = new Set();
  for (const name of add) if (name !== 'ALL') set.add(name);
  for (const name of drop) set.delete(name);
  return ALL_CAPABILITIES.filter((c) => set.has(c));
}

/** What a container's process is started with. */
export interface Privileges {
  readonly uid: number;
  readonly gid: number;
  /** Supplementary groups: `supplementalGroups` and `fsGroup`. */
  readonly groups: readonly number[];
  /** `allowPrivilegeEscalation: false`. */
  readonly noNewPrivs: boolean;
  /** The bounding set (names without `CAP_`), or `all` (privileged). */
  readonly capabilities: readonly string[] | 'all';
}

/**
 * The privileges of `container`'s process, or an error (an unknown capability). A container
 * that sets no user runs as root (gid 0), as an image without a `USER` does; a bare
 * `runAsUser` gets gid 0, as Docker and containerd give a uid without a group.
 */
export function containerPrivileges(
  pod: V1Pod,
  container: V1Container,
): Privileges | { error: string } {
  const sc = effectiveSecurity(pod, container);
  let capabilities: Privileges['capabilities'] = 'all';
  if (!sc.privileged) {
    const set = capabilitySet(sc.capabilities);
    if ('error' in set) return set;
    capabilities = set;
  }
  const groups = [
    ...new Set([...sc.supplementalGroups, ...(sc.fsGroup !== undefined ? [sc.fsGroup] : [])]),
  ];
  return {
    uid: sc.runAsUser ?? 0,
    gid: sc.runAsGroup ?? 0,
    groups,
    noNewPrivs: sc.allowPrivilegeEscalation === false,
    capabilities,
  };
}

/**
 * The `setpriv` options (up to `--`) that start a process with `p`. An agent that is not
 * root cannot change users or capabilities: it only sets `no_new_privs`, which needs no
 * privilege. Empty when there is nothing to do.
 */
export function setprivOptions(p: Privileges, agentIsRoot: boolean): string[] {
  if (!agentIsRoot) return p.noNewPrivs ? ['--no-new-privs', '--'] : [];
  const out = [`--reuid=${String(p.uid)}`, `--regid=${String(p.gid)}`];
  out.push(p.groups.length > 0 ? `--groups=${p.groups.join(',')}` : '--clear-groups');
  if (p.noNewPrivs) out.push('--no-new-privs');
  if (p.capabilities !== 'all') {
    const names = p.capabilities.map((c) => `,+${c.toLowerCase()}`).join('');
    out.push(`--bounding-set=-all${names}`);
  }
  out.push('--inh-caps=-all', '--ambient-caps=-all', '--');
  return out;
}

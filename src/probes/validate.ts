/**
 * The API server's validation of container probes, in its words, for providers that accept
 * pods the API server did not validate (or validated against another version).
 */
import type { V1Container, V1Probe } from '../wire.js';

export type ProbeKind = 'startup' | 'readiness' | 'liveness';

/** The container field of each kind of probe. */
export const PROBE_FIELD: Readonly<
  Record<ProbeKind, 'startupProbe' | 'readinessProbe' | 'livenessProbe'>
> = {
  startup: 'startupProbe',
  readiness: 'readinessProbe',
  liveness: 'livenessProbe',
};

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * Why `probe` (the container's `kind` probe) cannot run, in the API server's words with the
 * field's path (`livenessProbe.successThreshold: Invalid value: 2: must be 1`), several reasons
 * joined by `; `; undefined when it can. `container` resolves named ports; without it a
 * well-formed port name is accepted. Zero and absent numbers mean the defaults, as the API
 * server's defaulting would have set them.
 */
export function validateProbe(
  probe: V1Probe,
  kind: ProbeKind,
  container?: V1Container,
): string | undefined {
  const f = PROBE_FIELD[kind];
  const errors: string[] = [];
  const handlers = (['exec', 'httpGet', 'tcpSocket', 'grpc'] as const).filter(
    (h) => probe[h] !== undefined,
  );
  if (handlers.length === 0) errors.push(`${f}: Required value: must specify a handler type`);
  if (handlers.length > 1) errors.push(`${f}: Forbidden: may not specify more than 1 handler type`);

  for (const field of [
    'initialDelaySeconds',
    'timeoutSeconds',
    'periodSeconds',
    'successThreshold',
    'failureThreshold',
  ] as const) {
    const value = probe[field];
    if (value === undefined) continue;
    if (!Number.isInteger(value))
      errors.push(`${f}.${field}: Invalid value: ${value}: must be an integer`);
    else if (value < 0) {
      errors.push(`${f}.${field}: Invalid value: ${value}: must be greater than or equal to 0`);
    }
  }
  const st = probe.successThreshold;
  if (kind !== 'readiness' && st !== undefined && st !== 0 && st !== 1) {
    errors.push(`${f}.successThreshold: Invalid value: ${st}: must be 1`);
  }
  const grace = probe.terminationGracePeriodSeconds;
  if (grace !== undefined) {
    if (kind === 'readiness') {
      errors.push(
        `${f}.terminationGracePeriodSeconds: Invalid value: ${grace}: must not be set for readinessProbes`,
      );
    } else if (!Number.isInteger(grace) || grace <= 0) {
      errors.push(
        `${f}.terminationGracePeriodSeconds: Invalid value: ${grace}: must be greater than 0`,
      );
    }
  }

  if (probe.exec && (probe.exec.command ?? []).length === 0) {
    errors.push(`${f}.exec.command: Required value`);
  }
  if (probe.httpGet) {
    const h = probe.httpGet;
    const port = portError(h.port, container);
    if (port) errors.push(`${f}.httpGet.port: ${port}`);
    const scheme = h.scheme ?? 'HTTP';
    if (scheme !== 'HTTP' && scheme !== 'HTTPS') {
      errors.push(
        `${f}.httpGet.scheme: Unsupported value: ${JSON.stringify(scheme)}: supported values: "HTTP", "HTTPS"`,
      );
    }
    for (const header of h.httpHeaders ?? []) {
      if (!HEADER_NAME.test(header.name)) {
        errors.push(
          `${f}.httpGet.httpHeaders: Invalid value: ${JSON.stringify(header.name)}: a valid HTTP header must consist of alphanumeric characters or '-'`,
        );
      }
      if (/[\r\n\0]/.test(header.value)) {
        errors.push(
          `${f}.httpGet.httpHeaders: Invalid value: ${JSON.stringify(header.value)}: a header value may not contain line breaks or NUL`,
        );
      }
    }
  }
  if (probe.tcpSocket) {
    const port = portError(probe.tcpSocket.port, container);
    if (port) errors.push(`${f}.tcpSocket.port: ${port}`);
  }
  if (probe.grpc) {
    const port = probe.grpc.port;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      errors.push(`${f}.grpc.port: Invalid value: ${port}: must be between 1 and 65535, inclusive`);
    }
  }
  return errors.length === 0 ? undefined : errors.join('; ');
}

/** Why `port` (a number or a named container port) does not resolve, or undefined. */
function portError(port: number | string, container: V1Container | undefined): string | undefined {
  if (typeof port === 'number') {
    return Number.isInteger(port) && port >= 1 && port <= 65535
      ? undefined
      : `Invalid value: ${port}: must be between 1 and 65535, inclusive`;
  }
  if (/^\d+$/.test(port)) {
    // Not valid in the API, but the kubelet falls back to reading a name as a number.
    const n = Number(port);
    return n >= 1 && n <= 65535
      ? undefined
      : `Invalid value: ${JSON.stringify(port)}: must be between 1 and 65535, inclusive`;
  }
  if (port.length > 15 || !PORT_NAME.test(port) || !/[a-z]/.test(port) || port.includes('--')) {
    return `Invalid value: ${JSON.stringify(port)}: must be a valid port name (at most 15 lower-case letters, digits and '-')`;
  }
  if (container && !(container.ports ?? []).some((p) => p.name === port)) {
    return `Invalid value: ${JSON.stringify(port)}: no port of container ${JSON.stringify(container.name)} is named so`;
  }
  return undefined;
}

/** Every probe error of `container` (see {@link validateProbe}), or undefined. */
export function validateProbes(container: V1Container): string | undefined {
  const errors: string[] = [];
  for (const kind of ['startup', 'readiness', 'liveness'] as const) {
    const probe = container[PROBE_FIELD[kind]];
    if (!probe) continue;
    const error = validateProbe(probe, kind, container);
    if (error) errors.push(error);
  }
  return errors.length === 0 ? undefined : errors.join('; ');
}

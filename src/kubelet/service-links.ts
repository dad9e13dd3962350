/**
 * Docker-link style service variables, as the kubelet's pkg/kubelet/envvars `FromServices`
 * builds them. For a service `my-db` with ClusterIP 10.0.0.7 and ports `5432/TCP` (named
 * `pg`) and `9187/TCP` (named `metrics`):
 *
 *     MY_DB_SERVICE_HOST=10.0.0.7
 *     MY_DB_SERVICE_PORT=5432                  (first port)
 *     MY_DB_SERVICE_PORT_PG=5432               (every named port)
 *     MY_DB_SERVICE_PORT_METRICS=9187
 *     MY_DB_PORT=tcp://10.0.0.7:5432           (first port)
 *     MY_DB_PORT_5432_TCP=tcp://10.0.0.7:5432  (and _PROTO, _PORT, _ADDR; for every port)
 */
import type { V1EnvVar, V1Service } from '../wire.js';

/** Whether the service has a virtual IP (not headless, not `ExternalName`). */
export function isServiceIPSet(service: V1Service): boolean {
  const ip = service.spec?.clusterIP;
  return ip !== undefined && ip !== '' && ip !== 'None';
}

/** Upper case, `.` and `-` become `_`, and a leading digit gets a `_` in front. */
export function serviceEnvVarName(serviceName: string): string {
  const name = serviceName.replaceAll(/[.-]/g, '_').toUpperCase();
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/**
 * The variables of `services`, in their order. Services without a ClusterIP or without ports
 * are skipped (the API server rejects the latter for ClusterIP services; the kubelet would
 * index past the end).
 */
export function serviceLinkEnvVars(services: readonly V1Service[]): V1EnvVar[] {
  const result: V1EnvVar[] = [];
  for (const service of services) {
    const ports = service.spec?.ports ?? [];
    const first = ports[0];
    const ip = service.spec?.clusterIP ?? '';
    if (!isServiceIPSet(service) || first === undefined) continue;
    const prefix = serviceEnvVarName(service.metadata?.name ?? '');

    result.push({ name: `${prefix}_SERVICE_HOST`, value: ip });
    result.push({ name: `${prefix}_SERVICE_PORT`, value: String(first.port) });
    for (const port of ports) {
      if (port.name !== undefined && port.name !== '') {
        result.push({
          name: `${prefix}_SERVICE_PORT_${serviceEnvVarName(port.name)}`,
          value: String(port.port),
        });
      }
    }

    ports.forEach((port, i) => {
      const protocol = port.protocol !== undefined && port.protocol !== '' ? port.protocol : 'TCP';
      const url = `${protocol.toLowerCase()}://${ip}:${port.port}`;
      // Docker special-cases the first port.
      if (i === 0) result.push({ name: `${prefix}_PORT`, value: url });
      const portPrefix = `${prefix}_PORT_${port.port}_${protocol.toUpperCase()}`;
      result.push(
        { name: portPrefix, value: url },
        { name: `${portPrefix}_PROTO`, value: protocol.toLowerCase() },
        { name: `${portPrefix}_PORT`, value: String(port.port) },
        { name: `${portPrefix}_ADDR`, value: ip },
      );
    });
  }
  return result;
}

/** Where telemetry goes: Application Insights, by its connection string. */
export interface TelemetrySettings {
  readonly connectionString: string;
}

let started: Promise<void> | undefined;
let stop: (() => Promise<void>) | undefined;

/**
 * Starts the Azure Monitor OpenTelemetry distro once per process, when settings are given; without them
 * nothing is loaded or started, and the OpenTelemetry API calls in the app stay no-ops.
 */
export function startTelemetry(settings: TelemetrySettings | undefined): Promise<void> {
  if (settings === undefined) return Promise.resolve();
  started ??= (async () => {
    // Imported only when configured: the distro loads the whole SDK and its instrumentations, and sets
    // process-wide state as it loads.
    const { useAzureMonitor, shutdownAzureMonitor } = await import('@azure/monitor-opentelemetry');
    useAzureMonitor({
      azureMonitorExporterOptions: { connectionString: settings.connectionString },
      instrumentationOptions: {
        // Outgoing HTTP (Stripe) and the Azure SDKs (Tables, Queues, Service Bus) are our dependencies;
        // the databases the distro would otherwise hook are not used here.
        http: { enabled: true },
        azureSdk: { enabled: true },
        mongoDb: { enabled: false },
        mySql: { enabled: false },
        postgreSql: { enabled: false },
        redis: { enabled: false },
        redis4: { enabled: false },
      },
    });
    stop = shutdownAzureMonitor;
  })();
  return started;
}

/** Flushes and stops what `startTelemetry` started (at host shutdown); nothing when nothing started. */
export async function stopTelemetry(): Promise<void> {
  await started;
  await stop?.();
}

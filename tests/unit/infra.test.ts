import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, SETTING_NAMES } from '../../src/config.js';

/**
 * The Bicep against the code, by reading the Bicep as text (no Bicep CLI here or in CI): the app settings
 * of `functionapp.bicep` must load with `loadConfig` (so the deployed app starts), set nothing that
 * neither the app nor the platform reads, and give every trigger connection an identity-based form (the
 * storage account takes no keys, so a connection string cannot work).
 */

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');
const functionAppBicep = read('infra/modules/functionapp.bicep');
const mainBicep = read('infra/main.bicep');

/** Removes string literals (which may hold `${` and `}`) and line comments, so braces can be counted. */
const code = (line: string) => line.replace(/'(?:[^'\\]|\\.)*'/g, "''").replace(/\/\/.*$/, '');

/** The `key: value` lines directly inside the block that opens on the first line matching `opener`. */
function blockEntries(text: string, opener: RegExp): Map<string, string> {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => opener.test(line));
  if (start < 0) throw new Error(`no block matching ${opener} in the Bicep`);
  const entries = new Map<string, string>();
  let depth = 0;
  for (const line of lines.slice(start)) {
    const before = depth;
    for (const char of code(line)) {
      if (char === '{' || char === '[') depth++;
      else if (char === '}' || char === ']') depth--;
    }
    const entry = /^\s*([A-Za-z_]\w*)\s*:\s*(.*?)\s*$/.exec(line);
    if (before === 1 && entry?.[1] && entry[2] !== undefined) entries.set(entry[1], entry[2]);
    if (depth <= 0 && before > 0) return entries;
  }
  throw new Error(`block matching ${opener} never closes`);
}

interface Param {
  readonly hasDefault: boolean;
  readonly allowed: readonly string[];
}

/** `param name type [= default]` declarations, with their `@allowed([...])` values. */
function params(text: string): Map<string, Param> {
  const result = new Map<string, Param>();
  let allowed: string[] | undefined;
  for (const line of text.split('\n')) {
    if (/^@allowed\(\[/.test(line)) allowed = [];
    else if (allowed && /^\s+'[^']*'\s*$/.test(line)) allowed.push(line.trim().slice(1, -1));
    const param = /^param (\w+) \w+(\s*=.*)?$/.exec(line);
    if (param?.[1]) {
      result.set(param[1], { hasDefault: param[2] !== undefined, allowed: allowed ?? [] });
      allowed = undefined;
    }
  }
  return result;
}

/** A Bicep string literal without interpolation, unescaped; undefined for any other expression. */
function literal(value: string): string | undefined {
  const match = /^'((?:[^'\\$]|\\.)*)'$/.exec(value);
  return match?.[1]?.replace(/\\(.)/g, '$1');
}

const appSettingsResource = functionAppBicep.indexOf("resource appSettings 'Microsoft.Web/sites/config@");
/** Setting name -> its Bicep value expression. */
const settings = blockEntries(
  functionAppBicep.slice(Math.max(0, appSettingsResource)),
  /^\s*properties:\s*\{/,
);

/** The triggers registered in src/functions with a `connection`: the Functions host resolves those. */
const triggers = readdirSync(path.join(root, 'src/functions'))
  .filter((file) => file.endsWith('.ts'))
  .flatMap((file) =>
    [...read(`src/functions/${file}`).matchAll(/app\.(\w+)\(\s*'[^']+',\s*\{([^}]*)\}/g)].flatMap((match) => {
      const connection = /connection:\s*'(\w+)'/.exec(match[2] ?? '')?.[1];
      return connection ? [{ file, kind: match[1] ?? '', connection }] : [];
    }),
  );

/** Settings an identity-based connection of each trigger kind must have, besides `__credential`. */
const IDENTITY_PROPERTY: Readonly<Record<string, string>> = {
  storageQueue: 'queueServiceUri',
  serviceBusQueue: 'fullyQualifiedNamespace',
};
/** The properties of an identity-based connection the Functions host reads (`<connection>__<property>`). */
const IDENTITY_PROPERTIES = new Set([
  'queueServiceUri',
  'serviceUri',
  'fullyQualifiedNamespace',
  'credential',
  'clientId',
]);
const PLATFORM = /^(FUNCTIONS_|AzureWebJobs|WEBSITE_)|^APPLICATIONINSIGHTS_CONNECTION_STRING$/;

/** Why the app or the platform reads a setting, or undefined when nothing does. */
function readerOf(name: string): string | undefined {
  if (SETTING_NAMES.includes(name)) return 'src/config.ts';
  if (PLATFORM.test(name)) return 'the Functions host / App Service';
  const [connection, property] = name.split('__');
  if (
    property &&
    IDENTITY_PROPERTIES.has(property) &&
    triggers.some((trigger) => trigger.connection === connection)
  )
    return 'the Functions host (a trigger connection)';
  return undefined;
}

/**
 * What ARM resolves at deployment (parameters, module outputs, Key Vault references), stood in for by
 * values of the right shape, so `loadConfig` judges the settings as the app will see them. Literal values
 * in the Bicep are used as they are.
 */
const RESOLVED: Readonly<Record<string, string>> = {
  BILLING_TABLE_ENDPOINT: 'https://stbillingprod123456.table.core.windows.net',
  BILLING_QUEUE_ENDPOINT: 'https://stbillingprod123456.queue.core.windows.net',
  BILLING_QUEUE_NAME: 'billing-events',
  ENTITLEMENT_FEED_TRANSPORT: 'storage',
  ENTITLEMENT_FEED_QUEUE_NAME: 'entitlement-changes',
  ENTITLEMENT_FEED_TOPIC: 'entitlement-changes',
  ENTITLEMENT_FEED_SERVICEBUS__fullyQualifiedNamespace: 'sb-billing-prod-123456.servicebus.windows.net',
  BILLING_SERVICEBUS__fullyQualifiedNamespace: 'sb-billing-prod-123456.servicebus.windows.net',
  AUTH_JWKS_URL: 'https://id.example.com/.well-known/jwks.json',
  AUTH_ISSUER: 'https://id.example.com/',
  AUTH_AUDIENCE: 'billing-api',
  ENFORCEMENT_DEFAULT: 'enforce',
  ENFORCEMENT_OVERRIDES: '',
  // Key Vault references, as App Service resolves them.
  STRIPE_SECRET_KEY: 'rk_test_resolvedFromKeyVault',
  STRIPE_WEBHOOK_SECRET: 'whsec_resolvedFromKeyVault',
  BILLING_CHECKOUT_SUCCESS_URL: 'https://app.example.com/billing?checkout=success',
  BILLING_CHECKOUT_CANCEL_URL: 'https://app.example.com/billing?checkout=cancel',
  BILLING_PORTAL_RETURN_URL: 'https://app.example.com/billing',
  // The Application Insights component's connection string (turns telemetry on).
  APPLICATIONINSIGHTS_CONNECTION_STRING:
    'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/',
};

/** The environment the deployed app gets, with `BILLING_QUEUE_TRANSPORT` as deployed by `transport`. */
function deployedEnv(transport: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of settings) {
    if (!SETTING_NAMES.includes(name)) continue; // read by the platform, not by loadConfig
    const resolved = name === 'BILLING_QUEUE_TRANSPORT' ? transport : (literal(value) ?? RESOLVED[name]);
    if (resolved === undefined)
      throw new Error(`${name} = ${value}: add a stand-in for what it resolves to in RESOLVED`);
    env[name] = resolved;
  }
  return env;
}

describe('infra: the app settings of functionapp.bicep', () => {
  it('are found (the text parser reads the appSettings resource)', () => {
    expect(appSettingsResource).toBeGreaterThan(0);
    expect(settings.get('FUNCTIONS_WORKER_RUNTIME')).toBe("'node'");
    expect(settings.get('STRIPE_SECRET_KEY')).toMatch(/^'@Microsoft\.KeyVault\(SecretUri=/);
    expect(settings.size).toBeGreaterThan(15);
  });

  it.each(['storage', 'servicebus'])(
    'load with loadConfig, so the deployed app starts (BILLING_QUEUE_TRANSPORT=%s)',
    (transport) => {
      const config = loadConfig(deployedEnv(transport));
      // Managed identity everywhere: no connection string, no shared secret for tokens.
      expect(config.storage.kind).toBe('managedIdentity');
      expect(config.auth.kind).toBe('jwks');
      expect(config.queueTransport.kind).toBe(transport === 'servicebus' ? 'serviceBusIdentity' : 'storage');
    },
  );

  it('set nothing that neither the app nor the platform reads', () => {
    const unread = [...settings.keys()].filter((name) => readerOf(name) === undefined);
    expect(unread).toEqual([]);
    // The check can fail: a misspelt setting, or a connection property of no trigger, is caught.
    expect(readerOf('BILLING_CHECKOUT_SUCCES_URL')).toBeUndefined();
    expect(readerOf('BILLING_STORAGE_CONNECTION__tableServiceUri')).toBeUndefined();
    expect(readerOf('SOMETHING__credential')).toBeUndefined();
  });

  it('give every trigger connection an identity-based form, and no connection string', () => {
    const kinds = new Set(triggers.map((trigger) => trigger.kind));
    // The processor registers one of the two, chosen by BILLING_QUEUE_TRANSPORT at start-up: both are read.
    expect([...kinds]).toEqual(expect.arrayContaining(['storageQueue', 'serviceBusQueue']));
    for (const { file, kind, connection } of triggers) {
      const property = IDENTITY_PROPERTY[kind];
      expect(
        property,
        `${file}: a ${kind} trigger; say which setting its identity connection needs`,
      ).toBeDefined();
      expect(settings.has(`${connection}__${property}`), `${connection}__${property} (${file})`).toBe(true);
      expect(settings.get(`${connection}__credential`), `${connection}__credential (${file})`).toBe(
        "'managedidentity'",
      );
      // A plain setting of that name is a connection string, which the key-less account refuses (and
      // config.ts would take it over the endpoints).
      expect(settings.has(connection), `${connection} must not be set`).toBe(false);
    }
  });

  it('point the storage queue trigger at the same queue service the app sends to', () => {
    expect(settings.get('BILLING_STORAGE_CONNECTION__queueServiceUri')).toBe(
      settings.get('BILLING_QUEUE_ENDPOINT'),
    );
    expect(settings.get('AzureWebJobsStorage__accountName')).toBeDefined();
  });

  it('are each described in infra/README.md', () => {
    const readme = read('infra/README.md');
    expect([...settings.keys()].filter((name) => !readme.includes(name))).toEqual([]);
  });
});

describe('infra: parameters flow from main.bicep into functionapp.bicep', () => {
  const moduleParams = params(functionAppBicep);
  const passed = blockEntries(
    mainBicep.slice(mainBicep.indexOf("module functionApp 'modules/functionapp.bicep'")),
    /^\s*params:\s*\{/,
  );

  it('passes every parameter without a default, and only declared ones', () => {
    const missing = [...moduleParams]
      .filter(([name, p]) => !p.hasDefault && !passed.has(name))
      .map(([n]) => n);
    expect(missing).toEqual([]);
    expect([...passed.keys()].filter((name) => !moduleParams.has(name))).toEqual([]);
  });

  it('offers the same choices in main.bicep as in the module', () => {
    const mainParams = params(mainBicep);
    for (const [name, p] of moduleParams) {
      const source = passed.get(name);
      const outer = source ? mainParams.get(source) : undefined;
      if (p.allowed.length > 0 && outer) expect(outer.allowed, name).toEqual(p.allowed);
    }
    // Every transport the Bicep offers is one config.ts accepts.
    for (const transport of mainParams.get('queueTransport')?.allowed ?? []) {
      expect(() => loadConfig(deployedEnv(transport))).not.toThrow();
    }
  });
});

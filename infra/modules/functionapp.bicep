// The Functions app: a Linux Elastic Premium plan, the function app with a system-assigned managed identity,
// the identity's role assignments, and the app settings.
//
// Hosting plan: Elastic Premium (EP1 by default), not Flex Consumption. Why:
// - The platform's UI, APIs, job runner and execution runtime call the entitlement check synchronously
//   before gated actions. Elastic Premium keeps always-ready instances (minimumElasticInstanceCount) plus a
//   pre-warmed buffer, so those calls never wait for a cold start, and still scales out on load.
// - It takes the classic settings this app is configured with (FUNCTIONS_EXTENSION_VERSION,
//   FUNCTIONS_WORKER_RUNTIME, linuxFxVersion). Flex Consumption does not accept FUNCTIONS_WORKER_RUNTIME
//   as an app setting (nor linuxFxVersion); it sets the runtime in functionAppConfig instead.
// The cost of that choice with a key-less storage account: Elastic Premium normally keeps the app's content
// on an Azure Files share, which only works with an account key (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING).
// This app is created without Azure Files, as documented for secret-free apps: no WEBSITE_CONTENT* settings,
// the package runs from a private blob (WEBSITE_RUN_FROM_PACKAGE = its URL) fetched with the app's
// managed identity, and AzureWebJobsStorage is identity-based. Deploying means uploading a new package,
// restarting and syncing triggers (infra/README.md), and the Functions docs warn that scaling "could be
// limited" on Elastic Premium without Azure Files; watch scale-out under load before relying on it.
// If either is a burden, Flex Consumption is the switch:
// FC1 plan, functionAppConfig (deployment container, runtime node 20, scale settings), and without
// FUNCTIONS_WORKER_RUNTIME, linuxFxVersion and WEBSITE_RUN_FROM_PACKAGE.

@description('Azure region for the plan and the app.')
param location string

@description('Name of the Elastic Premium plan.')
param planName string

@description('Globally unique function app name (also its *.azurewebsites.net host name).')
@minLength(2)
@maxLength(60)
param functionAppName string

@description('Elastic Premium size: EP1 (1 vCPU, 3.5 GB), EP2 (2 vCPU, 7 GB), EP3 (4 vCPU, 14 GB).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param skuName string = 'EP1'

@description('Always-ready instances: never scaled in below this.')
@minValue(1)
@maxValue(20)
param minimumInstanceCount int = 1

@description('Upper bound for scale-out of the plan.')
@minValue(1)
@maxValue(100)
param maximumInstanceCount int = 20

@description('Name of the storage account (existing; created by storage.bicep).')
param storageAccountName string

@description('URL of the deployment package (a zip of the built app) in the private package container, without SAS: the app fetches it with its managed identity.')
param packageUrl string

@description('Table service endpoint of the storage account.')
param tableEndpoint string

@description('Queue service endpoint of the storage account.')
param queueEndpoint string

@description('Name of the billing events queue (storage queue and Service Bus queue share it).')
param queueName string

@description('BILLING_QUEUE_TRANSPORT: which queue carries billing events and triggers the processor. "storage": the storage queue (connection BILLING_STORAGE_CONNECTION); "servicebus": the Service Bus queue (connection BILLING_SERVICEBUS).')
@allowed([
  'storage'
  'servicebus'
])
param queueTransport string = 'storage'

@description('ENTITLEMENT_FEED_QUEUE_NAME: the storage queue `entitlements.changed` events are published to (with the storage feed transport).')
param feedQueueName string = 'entitlement-changes'

@description('ENTITLEMENT_FEED_TRANSPORT: where `entitlements.changed` events are published. "storage": a storage queue (ENTITLEMENT_FEED_QUEUE_NAME); "servicebus": a Service Bus topic (ENTITLEMENT_FEED_TOPIC, in the same namespace, identity-based).')
@allowed([
  'storage'
  'servicebus'
])
param feedTransport string = 'storage'

@description('ENTITLEMENT_FEED_TOPIC: the Service Bus topic of the feed (with the servicebus feed transport; it must exist).')
param feedTopic string = 'entitlement-changes'

@description('Name of the Service Bus namespace (existing; created by servicebus.bicep).')
param serviceBusNamespaceName string

@description('Fully qualified Service Bus namespace host name.')
param serviceBusFullyQualifiedNamespace string

@description('Name of the Key Vault (existing; created by keyvault.bicep).')
param keyVaultName string

@description('Versionless URI of the stripe-secret-key secret.')
param stripeSecretKeyUri string

@description('Versionless URI of the stripe-webhook-secret secret.')
param stripeWebhookSecretUri string

@description('Name of the Application Insights component (existing; created by monitoring.bicep).')
param appInsightsName string

@description('AUTH_JWKS_URL: JWKS endpoint of the identity provider that signs access tokens.')
param authJwksUrl string

@description('AUTH_ISSUER: expected "iss" of access tokens.')
param authIssuer string

@description('AUTH_AUDIENCE: expected "aud" of access tokens.')
param authAudience string

@description('BILLING_CHECKOUT_SUCCESS_URL: where Stripe Checkout sends the customer after paying (a page of the platform\'s UI).')
param checkoutSuccessUrl string

@description('BILLING_CHECKOUT_CANCEL_URL: where Stripe Checkout sends the customer who abandons it.')
param checkoutCancelUrl string

@description('BILLING_PORTAL_RETURN_URL: where the Stripe billing portal sends the customer back to.')
param portalReturnUrl string

@description('ENFORCEMENT_DEFAULT: enforcement mode for every feature without an override.')
@allowed([
  'enforce'
  'monitor'
  'off'
])
param enforcementDefault string = 'enforce'

@description('ENFORCEMENT_OVERRIDES: comma-separated feature=mode pairs, for example "executions=monitor". Empty for none.')
param enforcementOverrides string = ''

@description('Tags applied to every resource in this module.')
param tags object = {}

// Built-in role definition IDs.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

// Blob Data Owner: the Functions host keeps keys, leases and timer schedules in blobs and reads the package.
// Queue Data Contributor: the app's billing-events storage queue and the host's own queues.
// Table Data Contributor: the app's directory and billing tables (and the host's diagnostic events).
var storageRoleIds = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: skuName
    tier: 'ElasticPremium'
  }
  properties: {
    // Linux.
    reserved: true
    maximumElasticWorkerCount: maximumInstanceCount
  }
}

resource functionApp 'Microsoft.Web/sites@2023-12-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references resolve with the system-assigned identity.
    keyVaultReferenceIdentity: 'SystemAssigned'
    siteConfig: {
      linuxFxVersion: 'Node|20'
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      use32BitWorkerProcess: false
      minimumElasticInstanceCount: minimumInstanceCount
      preWarmedInstanceCount: 1
      // App settings are applied below, once the identity holds its roles.
    }
  }
}

// No FTP and no basic-auth (publishing profile) deployments: deployment is by package URL with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource storageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoleIds: {
    name: guid(storage.id, functionApp.id, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: functionApp.identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Azure Service Bus Data Owner: the Functions docs name Data Receiver or Data Owner for the Service Bus trigger
// and Data Sender for sending. One Data Owner assignment covers the HTTP functions (send) and the processor
// (receive), and also allows reading queue runtime properties such as message counts, which needs Manage
// rights that Receiver lacks. For least privilege, replace it with Sender + Receiver
// (69a216fc-b8fb-44d8-bc22-1f3c2cd27a39, 4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0).
resource serviceBusRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, functionApp.id, roles.serviceBusDataOwner)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Vault scope, not secret scope: the secrets may be created after this deployment (infra/README.md).
resource keyVaultRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionApp.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The complete set of app settings (this resource replaces whatever was there). Applied after the role
// assignments so the host's first start with identity-based storage does not race them. Every setting the
// app reads is parsed by src/config.ts; a bad value stops the app at start-up with a message naming it.
resource appSettings 'Microsoft.Web/sites/config@2023-12-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Functions runtime.
    FUNCTIONS_EXTENSION_VERSION: '~4'
    FUNCTIONS_WORKER_RUNTIME: 'node'
    AzureWebJobsStorage__accountName: storage.name
    WEBSITE_RUN_FROM_PACKAGE: packageUrl
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString

    // App data, with managed identity: BILLING_STORAGE_CONNECTION itself is deliberately absent (the
    // account takes no keys), so src/config.ts reads the two endpoints and uses DefaultAzureCredential.
    BILLING_TABLE_ENDPOINT: tableEndpoint
    BILLING_QUEUE_ENDPOINT: queueEndpoint
    BILLING_QUEUE_NAME: queueName
    BILLING_QUEUE_TRANSPORT: queueTransport

    // The processor's trigger is bound by the Functions host, not by src/config.ts: its connection name
    // (BILLING_STORAGE_CONNECTION or BILLING_SERVICEBUS, process-billing-event.ts) is resolved by the host,
    // which takes an identity-based connection from the settings "<name>__<property>". Without these the
    // host finds no connection and the processor never starts. Both forms are set, so switching
    // queueTransport needs no other setting (infra/README.md says what else to check first).
    // credential=managedidentity uses the system-assigned identity (a user-assigned one would also need
    // <name>__clientId).
    BILLING_STORAGE_CONNECTION__queueServiceUri: queueEndpoint
    BILLING_STORAGE_CONNECTION__credential: 'managedidentity'
    // The app's own Service Bus client reads BILLING_SERVICEBUS__fullyQualifiedNamespace too (config.ts).
    BILLING_SERVICEBUS__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
    BILLING_SERVICEBUS__credential: 'managedidentity'

    // The entitlement change feed (src/billing/feed/): where events are published. Signed webhooks to the
    // platform are off unless ENTITLEMENT_WEBHOOK_URL and ENTITLEMENT_WEBHOOK_SECRET (a Key Vault
    // reference) are added; see the README's settings table.
    ENTITLEMENT_FEED_TRANSPORT: feedTransport
    ENTITLEMENT_FEED_QUEUE_NAME: feedQueueName
    ENTITLEMENT_FEED_TOPIC: feedTopic
    ENTITLEMENT_FEED_SERVICEBUS__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace

    // Fixed redirect targets of checkout and the billing portal (never taken from a request).
    BILLING_CHECKOUT_SUCCESS_URL: checkoutSuccessUrl
    BILLING_CHECKOUT_CANCEL_URL: checkoutCancelUrl
    BILLING_PORTAL_RETURN_URL: portalReturnUrl

    // Access tokens.
    AUTH_JWKS_URL: authJwksUrl
    AUTH_ISSUER: authIssuer
    AUTH_AUDIENCE: authAudience

    // Timers with a schedule of their own: enterprise contract invoices, hourly at five past
    // (src/config.ts DEFAULT_CONTRACT_INVOICING_SCHEDULE; the host reads it when it indexes the app).
    BILLING_CONTRACT_INVOICING_SCHEDULE: '0 5 * * * *'

    // Entitlement enforcement.
    ENFORCEMENT_DEFAULT: enforcementDefault
    ENFORCEMENT_OVERRIDES: enforcementOverrides

    // Stripe, from Key Vault (latest version of each secret).
    STRIPE_SECRET_KEY: '@Microsoft.KeyVault(SecretUri=${stripeSecretKeyUri})'
    STRIPE_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${stripeWebhookSecretUri})'
  }
  dependsOn: [
    storageRoleAssignments
    serviceBusRoleAssignment
    keyVaultRoleAssignment
  ]
}

@description('Name of the function app.')
output name string = functionApp.name

@description('Default host name of the function app.')
output defaultHostName string = functionApp.properties.defaultHostName

@description('Object ID of the function app\'s system-assigned identity.')
output principalId string = functionApp.identity.principalId

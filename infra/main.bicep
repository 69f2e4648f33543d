// Production deployment of the billing backend (an Azure Functions app, Node.js 20, v4 programming model).
// Deploy into an existing resource group:
//   az deployment group create --resource-group <rg> --template-file infra/main.bicep --parameters ...
// See infra/README.md for the full procedure, the secrets to set afterwards, and what each module creates.

targetScope = 'resourceGroup'

@description('Azure region for every resource. Defaults to the resource group\'s region.')
param location string = resourceGroup().location

@description('Short name of this system, used in every resource name: 3-11 lowercase letters, digits or hyphens, starting with a letter.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'billing'

@description('Environment this deployment serves; part of every resource name and tagged on every resource.')
@allowed([
  'dev'
  'staging'
  'prod'
])
param environmentName string = 'prod'

@description('Elastic Premium plan size.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param functionPlanSku string = 'EP1'

@description('Always-ready function instances (never scaled in below this).')
@minValue(1)
@maxValue(20)
param minimumInstanceCount int = 1

@description('Maximum number of instances the plan scales out to.')
@minValue(1)
@maxValue(100)
param maximumInstanceCount int = 20

@description('Storage replication for the account holding the directory and billing tables.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 90

@description('AUTH_JWKS_URL: HTTPS URL of the JWKS of the identity provider that signs access tokens.')
@minLength(1)
param authJwksUrl string

@description('AUTH_ISSUER: expected "iss" claim of access tokens.')
@minLength(1)
param authIssuer string

@description('AUTH_AUDIENCE: expected "aud" claim of access tokens.')
@minLength(1)
param authAudience string

@description('BILLING_CHECKOUT_SUCCESS_URL: HTTPS URL of the platform page Stripe Checkout returns to after payment.')
@minLength(1)
param checkoutSuccessUrl string

@description('BILLING_CHECKOUT_CANCEL_URL: HTTPS URL of the platform page Stripe Checkout returns to when abandoned.')
@minLength(1)
param checkoutCancelUrl string

@description('BILLING_PORTAL_RETURN_URL: HTTPS URL of the platform page the Stripe billing portal returns to.')
@minLength(1)
param portalReturnUrl string

@description('BILLING_QUEUE_TRANSPORT: "storage" (the storage queue billing-events) or "servicebus" (the Service Bus queue billing-events, with sessions and duplicate detection). Both are provisioned; see infra/README.md before switching.')
@allowed([
  'storage'
  'servicebus'
])
param queueTransport string = 'storage'

@description('ENFORCEMENT_DEFAULT: enforcement mode of every feature without an override.')
@allowed([
  'enforce'
  'monitor'
  'off'
])
param enforcementDefault string = 'enforce'

@description('ENFORCEMENT_OVERRIDES: comma-separated feature=mode pairs (for example "executions=monitor"); empty for none.')
param enforcementOverrides string = ''

@description('Optional Stripe secret API key, written to Key Vault as stripe-secret-key. Leave empty to set it after deployment; an empty value never overwrites an existing secret.')
@secure()
param stripeSecretKey string = ''

@description('Optional Stripe webhook signing secret, written to Key Vault as stripe-webhook-secret. Leave empty to set it after deployment; an empty value never overwrites an existing secret.')
@secure()
param stripeWebhookSecret string = ''

@description('Optional object ID of the person, group or CI service principal that operates this deployment: gets Key Vault Secrets Officer on the vault and Storage Blob Data Contributor on the package container. Empty to skip.')
param operatorPrincipalId string = ''

@description('Blob name of the deployment package in the app-package container.')
param packageBlobName string = 'billing-backend.zip'

@description('Extra tags for every resource.')
param tags object = {}

var allTags = union(tags, {
  system: namePrefix
  environment: environmentName
})

// Deterministic per resource group, so redeployments update the same resources.
var suffix = take(uniqueString(subscription().id, resourceGroup().id, namePrefix, environmentName), 6)
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var queueName = 'billing-events'
var packageContainerName = 'app-package'

var names = {
  logAnalytics: 'log-${namePrefix}-${environmentName}-${suffix}'
  appInsights: 'appi-${namePrefix}-${environmentName}-${suffix}'
  // 3-24 lowercase letters and digits.
  storage: take('st${compactPrefix}${environmentName}${suffix}', 24)
  // 6-50 letters, digits and hyphens.
  serviceBus: 'sb-${namePrefix}-${environmentName}-${suffix}'
  // 3-24 letters, digits and hyphens.
  keyVault: take('kv-${compactPrefix}-${take(environmentName, 4)}-${suffix}', 24)
  plan: 'plan-${namePrefix}-${environmentName}-${suffix}'
  // At most 32 characters, so the Functions host ID (the first 32 characters of the name) is the full name.
  functionApp: take('func-${namePrefix}-${environmentName}-${suffix}', 32)
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
    retentionInDays: logRetentionInDays
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    storageAccountName: names.storage
    skuName: storageSku
    tableNames: [
      'directory'
      'billing'
    ]
    queueName: queueName
    packageContainerName: packageContainerName
    packageUploaderPrincipalId: operatorPrincipalId
    tags: allTags
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    location: location
    namespaceName: names.serviceBus
    queueName: queueName
    tags: allTags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    keyVaultName: names.keyVault
    stripeSecretKey: stripeSecretKey
    stripeWebhookSecret: stripeWebhookSecret
    secretsOfficerPrincipalId: operatorPrincipalId
    tags: allTags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    planName: names.plan
    functionAppName: names.functionApp
    skuName: functionPlanSku
    minimumInstanceCount: minimumInstanceCount
    maximumInstanceCount: maximumInstanceCount
    storageAccountName: storage.outputs.name
    packageUrl: '${storage.outputs.packageContainerUrl}/${packageBlobName}'
    tableEndpoint: storage.outputs.tableEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    queueName: queueName
    queueTransport: queueTransport
    serviceBusNamespaceName: serviceBus.outputs.serviceBusNamespaceName
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    keyVaultName: keyVault.outputs.name
    stripeSecretKeyUri: keyVault.outputs.stripeSecretKeyUri
    stripeWebhookSecretUri: keyVault.outputs.stripeWebhookSecretUri
    appInsightsName: monitoring.outputs.appInsightsComponentName
    authJwksUrl: authJwksUrl
    authIssuer: authIssuer
    authAudience: authAudience
    checkoutSuccessUrl: checkoutSuccessUrl
    checkoutCancelUrl: checkoutCancelUrl
    portalReturnUrl: portalReturnUrl
    enforcementDefault: enforcementDefault
    enforcementOverrides: enforcementOverrides
    tags: allTags
  }
}

@description('Name of the function app.')
output functionAppName string = functionApp.outputs.name

@description('Default host name of the function app (https://<this>/api/...).')
output functionAppDefaultHostName string = functionApp.outputs.defaultHostName

@description('Object ID of the function app\'s system-assigned managed identity.')
output functionAppPrincipalId string = functionApp.outputs.principalId

@description('Name of the storage account (tables directory and billing, queue billing-events, container app-package).')
output storageAccountName string = storage.outputs.name

@description('Name of the Service Bus namespace.')
output serviceBusNamespaceName string = serviceBus.outputs.serviceBusNamespaceName

@description('Name of the Key Vault holding stripe-secret-key and stripe-webhook-secret.')
output keyVaultName string = keyVault.outputs.name

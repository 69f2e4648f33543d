// One StorageV2 account for everything the app stores:
// - the Functions host (AzureWebJobsStorage, identity-based: blobs for keys and leases, queues and tables
//   for the runtime's own bookkeeping);
// - the app's data: tables `directory` and `billing` (BILLING_TABLE_ENDPOINT) and the storage queue
//   `billing-events` (BILLING_QUEUE_ENDPOINT);
// - the deployment package, in a private blob container the app runs from (WEBSITE_RUN_FROM_PACKAGE).
// Shared keys are disabled: every caller, the function app included, authenticates with Microsoft Entra ID.

@description('Azure region for the storage account.')
param location string

@description('Globally unique storage account name: 3-24 lowercase letters and digits.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Replication. ZRS keeps the billing tables available through a zone outage.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_ZRS'

@description('Tables the app uses. The app adds BILLING_TABLE_PREFIX (empty here) in front of each name.')
param tableNames array = [
  'directory'
  'billing'
]

@description('Storage queue the HTTP functions enqueue billing events to (BILLING_QUEUE_NAME).')
param queueName string = 'billing-events'

@description('Private blob container that holds the deployment package.')
param packageContainerName string = 'app-package'

@description('Optional: object ID of a user, group or service principal (for example the CI identity) allowed to upload deployment packages. Empty to skip.')
param packageUploaderPrincipalId string = ''

@description('Tags applied to every resource in this module.')
param tags object = {}

// Storage Blob Data Contributor
var blobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // No account keys and no SAS signed with them: Entra ID (managed identity) only.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: queueName
}

// Lets the deployer (a person or CI) upload packages with `az storage blob upload --auth-mode login`,
// which is the only way in once shared keys are off. Scoped to the package container only.
resource packageUploader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(packageUploaderPrincipalId)) {
  name: guid(packageContainer.id, packageUploaderPrincipalId, blobDataContributorRoleId)
  scope: packageContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributorRoleId)
    principalId: packageUploaderPrincipalId
  }
}

@description('Name of the storage account.')
output name string = storage.name

@description('Resource ID of the storage account.')
output id string = storage.id

// Built here without a trailing slash (primaryEndpoints has one); the app appends table and queue names.
@description('Table service endpoint, for BILLING_TABLE_ENDPOINT.')
output tableEndpoint string = 'https://${storage.name}.table.${environment().suffixes.storage}'

@description('Queue service endpoint, for BILLING_QUEUE_ENDPOINT.')
output queueEndpoint string = 'https://${storage.name}.queue.${environment().suffixes.storage}'

@description('URL of the deployment package container (no trailing slash).')
output packageContainerUrl string = 'https://${storage.name}.blob.${environment().suffixes.storage}/${packageContainer.name}'

@description('Name of the storage queue for billing events.')
output storageQueueName string = queue.name

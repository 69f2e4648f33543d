// Key Vault in RBAC mode for the app's Stripe secrets. The function app reads them through Key Vault
// references (`@Microsoft.KeyVault(SecretUri=...)`) with its system-assigned identity, which gets the
// Key Vault Secrets User role in functionapp.bicep.
//
// The secrets are written only when a value is passed in. A redeployment without values therefore never
// overwrites secrets set later with `az keyvault secret set` (see infra/README.md).

@description('Azure region for the vault.')
param location string

@description('Globally unique vault name: 3-24 letters, digits and hyphens, starting with a letter.')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Stripe secret API key of live mode (prefix sk_live). Empty to leave the secret as it is (or unset) and set it after deployment.')
@secure()
param stripeSecretKey string = ''

@description('Stripe webhook signing secret (whsec_...). Empty to leave the secret as it is (or unset) and set it after deployment.')
@secure()
param stripeWebhookSecret string = ''

@description('Optional: object ID of a user, group or service principal allowed to set secrets (Key Vault Secrets Officer). Empty to skip.')
param secretsOfficerPrincipalId string = ''

@description('Tags applied to every resource in this module.')
param tags object = {}

var stripeSecretKeyName = 'stripe-secret-key'
var stripeWebhookSecretName = 'stripe-webhook-secret'
// Key Vault Secrets Officer
var secretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC instead of access policies.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Once on, purge protection cannot be turned off; a deleted vault keeps its name for 90 days.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource stripeSecretKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(stripeSecretKey)) {
  parent: vault
  name: stripeSecretKeyName
  properties: {
    value: stripeSecretKey
    contentType: 'text/plain'
  }
}

resource stripeWebhookSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(stripeWebhookSecret)) {
  parent: vault
  name: stripeWebhookSecretName
  properties: {
    value: stripeWebhookSecret
    contentType: 'text/plain'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(vault.id, secretsOfficerPrincipalId, secretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficerRoleId)
    principalId: secretsOfficerPrincipalId
  }
}

@description('Name of the vault.')
output name string = vault.name

@description('Resource ID of the vault.')
output id string = vault.id

// Versionless URIs (trailing slash): the app always resolves the latest version of each secret.
// vaultUri already ends with a slash.
@description('Versionless URI of the stripe-secret-key secret.')
output stripeSecretKeyUri string = '${vault.properties.vaultUri}secrets/${stripeSecretKeyName}/'

@description('Versionless URI of the stripe-webhook-secret secret.')
output stripeWebhookSecretUri string = '${vault.properties.vaultUri}secrets/${stripeWebhookSecretName}/'

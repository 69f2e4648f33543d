// Service Bus namespace (Standard) with the `billing-events` queue: the production event queue between the
// HTTP functions (webhooks, checkout, ...) and the processor function (see ARCHITECTURE.md, "Shape").
// Local keys (SAS) are disabled: senders and receivers authenticate with Microsoft Entra ID.

@description('Azure region for the namespace.')
param location string

@description('Globally unique namespace name: 6-50 letters, digits and hyphens, starting with a letter.')
@minLength(6)
@maxLength(50)
param namespaceName string

@description('Name of the billing events queue (must match BILLING_QUEUE_NAME).')
param queueName string = 'billing-events'

@description('How long an undelivered message lives before it is dead-lettered (ISO 8601 duration).')
param messageTimeToLive string = 'P14D'

@description('Tags applied to every resource in this module.')
param tags object = {}

resource sbNamespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// requiresSession and requiresDuplicateDetection can only be chosen when the queue is created; changing
// them later means deleting and recreating the queue (and losing its messages).
resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: sbNamespace
  name: queueName
  properties: {
    // Stripe delivers events twice; a sender that sets MessageId to the event id gets the second copy
    // dropped by the broker within this window. The processor's marker rows stay the real guarantee.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    // Sessions (SessionId = billing owner) give per-owner FIFO and one consumer per owner at a time, so
    // writes to one owner's partition do not race each other.
    requiresSession: true
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: messageTimeToLive
    lockDuration: 'PT1M'
    maxSizeInMegabytes: 1024
    enablePartitioning: false
    enableBatchedOperations: true
  }
}

@description('Name of the namespace.')
output serviceBusNamespaceName string = sbNamespace.name

@description('Resource ID of the namespace.')
output serviceBusNamespaceId string = sbNamespace.id

@description('Fully qualified namespace host name, for the identity-based connection setting (<name>__fullyQualifiedNamespace).')
output fullyQualifiedNamespace string = split(split(sbNamespace.properties.serviceBusEndpoint, '//')[1], ':')[0]

@description('Name of the queue.')
output serviceBusQueueName string = queue.name

// dtf-sb on Azure: a Service Bus namespace with one task hub's queues, a storage account for history
// chunks, payloads and the instance store, and a Container Apps worker that authenticates with a
// user-assigned managed identity and scales on the orchestrator and worker queues with KEDA.
//
// Queue names: dtf-sb's entities are "<hub>/orchestrator", "<hub>/worker" and "<hub>/tracking".
// Azure Resource Manager reserves '/' in resource names, so templates spell it '~' (the portal does
// the same); Service Bus stores the queue as "<hub>/orchestrator".

targetScope = 'resourceGroup'

@description('Task hub name: the prefix of the three queues and of the blob containers.')
@minLength(1)
@maxLength(62)
param hubName string = 'dtfsb'

@description('Worker container image, e.g. myregistry.azurecr.io/dtf-sb-worker:1.0')
param workerImage string

@description('The worker module and attribute the image runs (dtf-sb worker MODULE:ATTR).')
param workerEntryPoint string = 'app.worker:worker'

param location string = resourceGroup().location
param namespaceName string = 'sb-${uniqueString(resourceGroup().id)}'
param storageAccountName string = 'st${uniqueString(resourceGroup().id)}'
param environmentName string = 'cae-${uniqueString(resourceGroup().id)}'
param workerAppName string = 'dtf-sb-worker'

@description('Max delivery count of each hub queue (dtf-sb and DTF default: 10).')
@minValue(1)
param maxDeliveryCount int = 10

@description('Lock duration of each hub queue (ISO 8601; dtf-sb default 60 s, renewed while work runs).')
param lockDuration string = 'PT1M'

@description('Duplicate-detection window (dtf-sb and DTF default: 4 hours).')
param duplicateDetectionWindow string = 'PT4H'

param minReplicas int = 1
param maxReplicas int = 10

@description('Scale out one replica per this many waiting orchestrator sessions or activity messages.')
param messagesPerReplica int = 20

var queues = [
  { suffix: 'orchestrator', requiresSession: true }
  { suffix: 'worker', requiresSession: false }
  { suffix: 'tracking', requiresSession: true }
]

// Built-in role definition ids.
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
// Blob index tags (used by instance queries) need the Owner data role, not Contributor.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  sku: { name: 'Standard', tier: 'Standard' }
  properties: { minimumTlsVersion: '1.2', disableLocalAuth: false }
}

resource hubQueues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for q in queues: {
  parent: namespace
  name: '${hubName}~${q.suffix}'
  properties: {
    requiresSession: q.requiresSession
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    maxSizeInMegabytes: 1024
    deadLetteringOnMessageExpiration: false
  }
}]

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: storageAccountName
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${workerAppName}-identity'
  location: location
}

resource sbSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, identity.id, serviceBusDataSender)
  scope: namespace
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
  }
}

resource sbReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, identity.id, serviceBusDataReceiver)
  scope: namespace
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: 'log-${uniqueString(resourceGroup().id)}'
  location: location
  properties: { sku: { name: 'PerGB2018' }, retentionInDays: 30 }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

var fqdn = '${namespace.name}.servicebus.windows.net'

resource worker 'Microsoft.App/containerApps@2024-03-01' = {
  name: workerAppName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  dependsOn: [ sbSender, sbReceiver, blobOwner, hubQueues ]
  properties: {
    managedEnvironmentId: environment.id
    template: {
      containers: [
        {
          name: 'worker'
          image: workerImage
          args: [ 'worker', workerEntryPoint, '--health-port', '8080' ]
          resources: { cpu: json('0.5'), memory: '1Gi' }
          env: [
            { name: 'DTF_SB_HUB', value: hubName }
            { name: 'DTF_SB_SERVICEBUS_NAMESPACE', value: fqdn }
            { name: 'DTF_SB_STORAGE_ACCOUNT_URL', value: storage.properties.primaryEndpoints.blob }
            { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
          ]
          probes: [
            { type: 'Liveness', httpGet: { path: '/health', port: 8080 }, periodSeconds: 30 }
            { type: 'Readiness', httpGet: { path: '/ready', port: 8080 }, periodSeconds: 10 }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'orchestrator-queue'
            custom: {
              type: 'azure-servicebus'
              identity: identity.id
              metadata: { namespace: namespace.name, queueName: '${hubName}/orchestrator', messageCount: string(messagesPerReplica) }
            }
          }
          {
            name: 'worker-queue'
            custom: {
              type: 'azure-servicebus'
              identity: identity.id
              metadata: { namespace: namespace.name, queueName: '${hubName}/worker', messageCount: string(messagesPerReplica) }
            }
          }
        ]
      }
    }
  }
}

output serviceBusNamespace string = fqdn
output storageAccountUrl string = storage.properties.primaryEndpoints.blob
output workerIdentityClientId string = identity.properties.clientId
output queueNames array = [for q in queues: '${hubName}/${q.suffix}']

// The Function App on the Flex Consumption plan (FC1, Linux, Python 3.11), running as the
// user-assigned identity. Flex takes the runtime and the deployment package location from
// functionAppConfig, not from FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION settings.

param planName string
param appName string
param location string
param tags object
param identityId string
param deploymentContainerUrl string
param appSettings object
param maximumInstanceCount int
param instanceMemoryMB int
@description('Subnet (delegated to Microsoft.App/environments) for VNet integration; empty: none.')
param subnetId string = ''

resource flexPlan 'Microsoft.Web/serverfarms@2024-04-01' = {
  #checkov:skip=CKV_AZURE_225: Flex zone redundancy needs a supported region and a ZRS storage account; work survives an instance loss anyway because every step is a queue message that is retried
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  #checkov:skip=CKV_AZURE_222: Event Grid delivers AKS events to the function's public webhook; every route still requires a function key or the Event Grid system key
  #checkov:skip=CKV_AZURE_17: Event Grid cannot present a client certificate; callers authenticate with function keys and the Event Grid system key instead
  #checkov:skip=CKV_AZURE_212: Flex Consumption scales per trigger from zero; a step that finds no instance waits on the queue and runs on the next one
  #checkov:skip=CKV_AZURE_213: health check removes unhealthy instances from HTTP load balancing; this app is driven by queue, Event Grid and timer triggers and exposes no anonymous health route
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: flexPlan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No basic (user/password) publishing: azd deploys with an Entra ID token.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName

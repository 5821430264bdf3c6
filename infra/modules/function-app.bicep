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
@description('Application (client) id of the operator API app registration (infra/hooks/operator-app.sh).')
param operatorAppClientId string

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
  #checkov:skip=CKV_AZURE_222: Event Grid delivers AKS events to the function's public webhook; operator routes require an Entra ID token (authsettingsV2 below) and the webhook the Event Grid system key
  #checkov:skip=CKV_AZURE_17: Event Grid cannot present a client certificate; operators authenticate with Entra ID and Event Grid with the system key instead
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

// App Service authentication (Easy Auth) with Entra ID: every request needs a valid access token
// for the operator API app registration (401 otherwise), except the two paths Azure itself calls
// with keys: the Event Grid webhook (system key) and the host admin API (master key). The app then
// reads the validated principal from X-MS-CLIENT-PRINCIPAL and checks the route's app role
// (Upgrade.Read / Upgrade.Operate / Upgrade.Approve); the platform sets WEBSITE_AUTH_ENABLED,
// without which the app refuses every operator route. sandbox/easy_auth.py emulates this locally
// with the same excluded paths (tests/integration/test_infra.py compares them).
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  #checkov:skip=CKV_AZURE_13: checkov reads the legacy authsettings shape (properties.enabled); this is authsettingsV2, enabled by platform.enabled and tested in tests/integration/test_infra.py
  #checkov:skip=CKV_AZURE_63: a site-config check that checkov applies to every sites/config resource; this one holds only authentication settings (logging is on the site via Application Insights)
  #checkov:skip=CKV_AZURE_65: a site-config check that checkov applies to every sites/config resource; this one holds only authentication settings
  #checkov:skip=CKV_AZURE_66: a site-config check that checkov applies to every sites/config resource; this one holds only authentication settings
  #checkov:skip=CKV_AZURE_80: a .NET framework check that checkov applies to every sites/config resource; this one holds only authentication settings of a Python app
  #checkov:skip=CKV_AZURE_88: a site-config check that checkov applies to every sites/config resource; this one holds only authentication settings
  #checkov:skip=CKV_AZURE_222: public network access is a site property, set and justified on functionApp above; this resource holds only authentication settings
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/runtime/webhooks/eventgrid'
        '/admin/*'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          clientId: operatorAppClientId
        }
        validation: {
          allowedAudiences: [
            'api://${operatorAppClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
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

// Everything the AKS node upgrade Function App needs, deployed by `azd provision` (or `azd up`).
// The Event Grid subscriptions that feed it are NOT here: they are created after the code is
// deployed, by subscriptions.bicep from the postdeploy hook (see README.md, "Why two stages").
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of the app and its resources.')
param location string

@minLength(1)
@description('ARM ids of the AKS clusters the app may act on (no trailing slash). Each one gets the agent-pool operator role and, after deploy, an Event Grid subscription.')
param targetClusterIds array

@description('ARM id of an Azure Kubernetes Fleet Manager whose update-run gates the app approves with its health gate; empty: none.')
param fleetId string = ''

@description('Name of the resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('UPGRADE_POLICY app setting: policy per cluster/pool (an object, stored as JSON). {} means the defaults. Set from the file UPGRADE_POLICY_FILE names, checked by the preprovision hook.')
param upgradePolicy object = {}

@description('The target clusters use Azure RBAC for Kubernetes authorization: grant the app the Kubernetes data role on each (modules/kubernetes-data-role.bicep). Harmless on a Kubernetes RBAC cluster, where it has no effect.')
param azureRbacForKubernetes bool = false

@description('VNet integration of the Flex app, to reach private AKS API servers (peer the app VNet with the clusters\' VNets). Implied by natGatewayOutboundIp.')
param vnetIntegration bool = false

@description('A NAT gateway with one static public IP for everything the app sends (output APP_OUTBOUND_IP): add it to the clusters\' authorized IP ranges.')
param natGatewayOutboundIp bool = false

@description('Address space of the app VNet (VNet integration).')
param appVnetAddressPrefix string = '10.240.0.0/24'

@description('Subnet of the app inside it, delegated to Flex Consumption (at least a /27 is recommended).')
param appSubnetPrefix string = '10.240.0.0/26'

@description('Private DNS zones of private clusters (ARM ids, e.g. of privatelink.<region>.azmk8s.io): each is linked to the app VNet so the app resolves the API servers.')
param privateClusterDnsZoneIds array = []

@description('QUARANTINE_SCAN_SCHEDULE app setting: NCRONTAB (six fields) of the quarantine scan.')
param quarantineScanSchedule string = '0 */5 * * * *'

@description('Application (client) id of the operator API app registration with the app roles Upgrade.Read, Upgrade.Operate and Upgrade.Approve; the preprovision hook creates it (infra/hooks/operator-app.sh).')
param operatorAppClientId string

@minValue(40)
@maxValue(1000)
@description('Flex Consumption: most instances the app may scale out to.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption: memory of each instance.')
param instanceMemoryMB int = 2048

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// Fixed by the app's code (function_app.py triggers and the run store): one place to change them.
var stepQueueNames = [
  'upgrade-steps'
  'upgrade-steps-poison'
]
var runStoreTableNames = [
  'runs'
  'runhistory'
  'alertstate'
]
var deploymentContainerName = 'app-package'

var clusterResourceGroupIds = [for clusterId in targetClusterIds: '/subscriptions/${split(clusterId, '/')[2]}/resourceGroups/${split(clusterId, '/')[4]}']

resource appResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: appResourceGroup
  params: {
    name: 'id-aksupgrade-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: appResourceGroup
  params: {
    logAnalyticsName: 'log-aksupgrade-${resourceToken}'
    applicationInsightsName: 'appi-aksupgrade-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: appResourceGroup
  params: {
    name: 'staksupg${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: stepQueueNames
    tableNames: runStoreTableNames
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

module alertsTopic 'modules/alerts-topic.bicep' = {
  name: 'alerts-topic'
  scope: appResourceGroup
  params: {
    name: 'evgt-aksupgrade-alerts-${resourceToken}'
    location: location
    tags: tags
  }
}

module appDataAccess 'modules/app-data-access.bicep' = {
  name: 'app-data-access'
  scope: appResourceGroup
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    alertsTopicName: alertsTopic.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// Exactly the app settings the code reads when deployed (upgrade/settings.py, deployed=True),
// plus APPLICATIONINSIGHTS_AUTHENTICATION_STRING, read by the Functions host itself because
// Application Insights accepts Entra ID authenticated telemetry only. tests/integration/test_infra.py
// checks these names against the settings module.
var appSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  AZURE_CLIENT_ID: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  ALLOWED_CLUSTERS: join(targetClusterIds, ',')
  QUARANTINE_SCAN_SCHEDULE: quarantineScanSchedule
  RUN_RECONCILE_SCHEDULE: '0 */2 * * * *'
  UPGRADE_POLICY: string(upgradePolicy)
  ALERTS_TOPIC_ENDPOINT: alertsTopic.outputs.endpoint
}

var useVnet = vnetIntegration || natGatewayOutboundIp || !empty(privateClusterDnsZoneIds)

module network 'modules/network.bicep' = if (useVnet) {
  name: 'network'
  scope: appResourceGroup
  params: {
    name: 'aksupgrade-${resourceToken}'
    location: location
    tags: tags
    addressPrefix: appVnetAddressPrefix
    subnetPrefix: appSubnetPrefix
    natGateway: natGatewayOutboundIp
  }
}

module privateDnsLinks 'modules/private-dns-link.bicep' = [for (zoneId, index) in privateClusterDnsZoneIds: {
  name: 'private-dns-link-${index}-${resourceToken}'
  scope: resourceGroup(split(zoneId, '/')[2], split(zoneId, '/')[4])
  params: {
    zoneName: last(split(zoneId, '/'))
    vnetId: network.outputs.vnetId
    linkName: 'aksupgrade-${resourceToken}'
  }
}]

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: appResourceGroup
  // The host reads its storage and deployment package with the identity as soon as it starts.
  dependsOn: [
    appDataAccess
  ]
  params: {
    planName: 'plan-aksupgrade-${resourceToken}'
    appName: 'func-aksupgrade-${resourceToken}'
    location: location
    tags: union(tags, {
      'azd-service-name': 'upgrader'
    })
    identityId: identity.outputs.id
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
    appSettings: appSettings
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    subnetId: useVnet ? network.outputs.subnetId : ''
    operatorAppClientId: operatorAppClientId
  }
}

module agentPoolOperatorRole 'modules/agentpool-operator-role.bicep' = {
  name: 'agentpool-operator-role-${resourceToken}'
  params: {
    roleName: 'AKS node upgrade agent-pool operator (${environmentName}-${resourceToken})'
    // union() removes duplicates: several clusters may share a resource group.
    assignableScopes: union(clusterResourceGroupIds, clusterResourceGroupIds)
  }
}

module kubernetesDataRole 'modules/kubernetes-data-role.bicep' = if (azureRbacForKubernetes) {
  name: 'kubernetes-data-role-${resourceToken}'
  params: {
    roleName: 'AKS node upgrade Kubernetes data access (${environmentName}-${resourceToken})'
    assignableScopes: union(clusterResourceGroupIds, clusterResourceGroupIds)
  }
}

module clusterAccess 'modules/cluster-access.bicep' = [for (clusterId, index) in targetClusterIds: {
  name: 'cluster-access-${index}-${resourceToken}'
  scope: resourceGroup(split(clusterId, '/')[2], split(clusterId, '/')[4])
  params: {
    clusterName: last(split(clusterId, '/'))
    principalId: identity.outputs.principalId
    agentPoolOperatorRoleGuid: agentPoolOperatorRole.outputs.roleGuid
    kubernetesDataRoleGuid: azureRbacForKubernetes ? kubernetesDataRole.outputs.roleGuid : ''
  }
}]

module fleetGateRole 'modules/fleet-gate-role.bicep' = if (!empty(fleetId)) {
  name: 'fleet-gate-role-${resourceToken}'
  params: {
    roleName: 'AKS node upgrade Fleet gate approver (${environmentName}-${resourceToken})'
    assignableScopes: empty(fleetId) ? [] : ['/subscriptions/${split(fleetId, '/')[2]}/resourceGroups/${split(fleetId, '/')[4]}']
  }
}

module fleetAccess 'modules/fleet-access.bicep' = if (!empty(fleetId)) {
  name: 'fleet-access-${resourceToken}'
  scope: resourceGroup(empty(fleetId) ? subscription().subscriptionId : split(fleetId, '/')[2],
    empty(fleetId) ? appResourceGroup.name : split(fleetId, '/')[4])
  params: {
    fleetName: last(split(fleetId, '/'))
    principalId: identity.outputs.principalId
    fleetGateRoleGuid: empty(fleetId) ? '' : fleetGateRole.outputs.roleGuid
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = appResourceGroup.name
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.id
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
// The CLI's --api-url (AKS_UPGRADE_API_URL).
output AKS_UPGRADE_API_URL string = 'https://${functionApp.outputs.defaultHostName}'
// The fixed outbound address with natGatewayOutboundIp (for the clusters' authorized IP ranges).
output APP_OUTBOUND_IP string = natGatewayOutboundIp ? network.outputs.outboundIp : ''
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output ALERTS_TOPIC_ID string = alertsTopic.outputs.id
output ALERTS_TOPIC_ENDPOINT string = alertsTopic.outputs.endpoint
output TARGET_CLUSTER_IDS array = targetClusterIds
output FLEET_ID string = fleetId
// The CLI's --api-scope (AKS_UPGRADE_API_SCOPE).
output AKS_UPGRADE_API_SCOPE string = 'api://${operatorAppClientId}/.default'

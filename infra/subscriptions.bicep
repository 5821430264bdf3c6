// Second stage, run by the azd postdeploy hook (hooks/postdeploy.sh) once the code is deployed:
// for each target cluster, an Event Grid system topic and a subscription to the app's
// Event Grid-triggered function. Creating an AzureFunction destination before the function exists
// fails with "Destination endpoint not found", which is why this is not part of main.bicep.
targetScope = 'resourceGroup'

@minLength(1)
param environmentName string

@description('ARM id of the Function App (main.bicep output AZURE_FUNCTION_APP_ID).')
param functionAppId string

@minLength(1)
@description('ARM ids of the AKS clusters (main.bicep output TARGET_CLUSTER_IDS).')
param targetClusterIds array

@description('ARM id of the Fleet Manager whose update-run gates the app approves (main.bicep output FLEET_ID); empty: none.')
param fleetId string = ''

// The Event Grid trigger in function_app.py; tests/integration/test_infra.py checks the name.
var eventHandlerFunctionName = 'on_aks_event'

// The six AKS events the product reacts to.
var aksUpgradeEventTypes = [
  'Microsoft.ContainerService.NewKubernetesVersionAvailable'
  'Microsoft.ContainerService.ClusterSupportEnding'
  'Microsoft.ContainerService.ClusterSupportEnded'
  'Microsoft.ContainerService.NodePoolRollingStarted'
  'Microsoft.ContainerService.NodePoolRollingSucceeded'
  'Microsoft.ContainerService.NodePoolRollingFailed'
]

// The Fleet Manager gate events (Azure Resource Notifications, AKS Resources), to the same function.
var fleetGateEventTypes = [
  'Microsoft.ResourceNotifications.AKSResources.FleetGateCreated'
  'Microsoft.ResourceNotifications.AKSResources.FleetGateUpdated'
  'Microsoft.ResourceNotifications.AKSResources.FleetGateDeleted'
]

module fleetEvents 'modules/fleet-events.bicep' = if (!empty(fleetId)) {
  name: 'fleet-events-${uniqueString(environmentName, fleetId)}'
  // guarded: a conditional module's scope is still evaluated when fleetId is empty
  scope: resourceGroup(empty(fleetId) ? subscription().subscriptionId : split(fleetId, '/')[2],
    empty(fleetId) ? resourceGroup().name : split(fleetId, '/')[4])
  params: {
    fleetId: fleetId
    functionAppId: functionAppId
    eventHandlerFunctionName: eventHandlerFunctionName
    eventTypes: fleetGateEventTypes
    tags: {
      'azd-env-name': environmentName
    }
  }
}

module clusterEvents 'modules/cluster-events.bicep' = [for (clusterId, index) in targetClusterIds: {
  name: 'cluster-events-${index}-${uniqueString(environmentName, clusterId)}'
  scope: resourceGroup(split(clusterId, '/')[2], split(clusterId, '/')[4])
  params: {
    clusterName: last(split(clusterId, '/'))
    functionAppId: functionAppId
    eventHandlerFunctionName: eventHandlerFunctionName
    eventTypes: aksUpgradeEventTypes
    tags: {
      'azd-env-name': environmentName
    }
  }
}]

output SYSTEM_TOPIC_IDS array = [for (clusterId, index) in targetClusterIds: clusterEvents[index].outputs.systemTopicId]

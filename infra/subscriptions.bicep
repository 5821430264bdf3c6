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

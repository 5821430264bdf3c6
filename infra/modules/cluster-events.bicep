// One target cluster's Event Grid system topic and the subscription that delivers its six AKS
// upgrade events to the app's Event Grid-triggered function. Deployed into the cluster's resource
// group, after the code is deployed (infra/subscriptions.bicep, run by the azd postdeploy hook).

param clusterName string
param functionAppId string
param eventHandlerFunctionName string
param eventTypes array
param tags object

resource cluster 'Microsoft.ContainerService/managedClusters@2024-05-01' existing = {
  name: clusterName
}

// Event Grid allows one system topic per source resource: if the cluster already has one, see
// "Adding a cluster" in infra/README.md.
resource clusterSystemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: '${clusterName}-aks-events'
  location: cluster.location
  tags: tags
  properties: {
    source: cluster.id
    topicType: 'Microsoft.ContainerService.ManagedClusters'
  }
}

resource upgradeEventsToApp 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: clusterSystemTopic
  name: 'aks-node-upgrades'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${eventHandlerFunctionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: eventTypes
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output systemTopicId string = clusterSystemTopic.id

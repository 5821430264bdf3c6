// The Fleet Manager gate events of one subscription (Azure Resource Notifications, AKS Resources
// system topic: emitted at subscription scope only, location global) and the subscription that
// delivers the gates of the configured Fleet to the app's Event Grid-triggered function.
// Deployed into the Fleet's resource group by infra/subscriptions.bicep when fleetId is set.

param fleetId string
param functionAppId string
param eventHandlerFunctionName string
param eventTypes array
param tags object

// Event Grid allows one system topic per source: if the subscription already has an AKS Resources
// topic, see "Fleet Manager gates" in infra/README.md.
resource aksResourcesTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'aks-resources-${uniqueString(fleetId)}'
  location: 'global'
  tags: tags
  properties: {
    source: '/subscriptions/${split(fleetId, '/')[2]}'
    topicType: 'Microsoft.ResourceNotifications.AKSResources'
  }
}

resource fleetGateEventsToApp 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: aksResourcesTopic
  name: 'aks-fleet-gates'
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
      // only this Fleet's gates (string filters compare without case)
      advancedFilters: [
        {
          operatorType: 'StringBeginsWith'
          key: 'data.resourceInfo.id'
          values: [
            '${fleetId}/gates/'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output systemTopicId string = aksResourcesTopic.id

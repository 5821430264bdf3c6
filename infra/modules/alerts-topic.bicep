// Event Grid custom topic that receives the product's alerts (quarantined nodes, failed runs) as
// CloudEvents 1.0. Local (key) auth is disabled: only Entra ID principals holding EventGrid Data
// Sender on this topic may publish. Operators route it onward with their own subscriptions.

param name string
param location string
param tags object

resource alertsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  #checkov:skip=CKV_AZURE_191: the topic only receives alerts; an identity is needed only when an operator's subscription delivers with the topic's identity, and is added then
  #checkov:skip=CKV_AZURE_193: the app publishes over the public endpoint (its optional VNet integration is for reaching clusters; no private endpoints are deployed); key auth is disabled, publishing needs the EventGrid Data Sender role
  name: name
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output id string = alertsTopic.id
output name string = alertsTopic.name
output endpoint string = alertsTopic.properties.endpoint

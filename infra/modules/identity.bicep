// The app's user-assigned managed identity: the one principal every grant in this template names.
// User-assigned (not system-assigned) so its ids exist before the Function App does, which lets
// the storage roles be in place before the host first starts, and survives an app re-creation.

param name string
param location string
param tags object

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = appIdentity.id
output clientId string = appIdentity.properties.clientId
output principalId string = appIdentity.properties.principalId

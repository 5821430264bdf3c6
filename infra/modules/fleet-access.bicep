// Grants the app identity the Fleet gate role on one Fleet Manager, at the Fleet's scope:
// deployed into the Fleet's resource group.

param fleetName string
param principalId string
param fleetGateRoleGuid string

resource fleet 'Microsoft.ContainerService/fleets@2025-03-01' existing = {
  name: fleetName
}

var fleetGateRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', fleetGateRoleGuid)

resource fleetGateGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(fleet.id, principalId, fleetGateRoleId)
  scope: fleet
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: fleetGateRoleId
  }
}

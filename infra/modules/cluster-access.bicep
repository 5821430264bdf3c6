// Grants the app identity the agent-pool operator role on one target cluster, at the cluster's
// scope (not its resource group): deployed into the cluster's resource group.

param clusterName string
param principalId string
param agentPoolOperatorRoleGuid string

resource cluster 'Microsoft.ContainerService/managedClusters@2024-05-01' existing = {
  name: clusterName
}

// Built in the cluster's subscription: custom roles are tenant-wide, assignable where listed.
var agentPoolOperatorRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', agentPoolOperatorRoleGuid)

resource agentPoolOperatorGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cluster.id, principalId, agentPoolOperatorRoleId)
  scope: cluster
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: agentPoolOperatorRoleId
  }
}

// Grants the app identity its roles on one target cluster, at the cluster's scope (not its
// resource group): deployed into the cluster's resource group. The agent-pool operator role always;
// the Kubernetes data role when the deployment enables Azure RBAC for Kubernetes authorization.

param clusterName string
param principalId string
param agentPoolOperatorRoleGuid string
@description('GUID of the Kubernetes data role; empty: the cluster uses Kubernetes RBAC (k8s/).')
param kubernetesDataRoleGuid string = ''

resource cluster 'Microsoft.ContainerService/managedClusters@2024-05-01' existing = {
  name: clusterName
}

// Built in the cluster's subscription: custom roles are tenant-wide, assignable where listed.
var agentPoolOperatorRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', agentPoolOperatorRoleGuid)
var kubernetesDataRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', kubernetesDataRoleGuid)

resource agentPoolOperatorGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cluster.id, principalId, agentPoolOperatorRoleId)
  scope: cluster
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: agentPoolOperatorRoleId
  }
}

resource kubernetesDataGrant 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(kubernetesDataRoleGuid)) {
  name: guid(cluster.id, principalId, kubernetesDataRoleId)
  scope: cluster
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: kubernetesDataRoleId
  }
}

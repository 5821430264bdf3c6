// Custom role with exactly the AKS control-plane (ARM) actions the app calls, no more:
// tests/integration/test_arm_role.py derives them from the adapter's real requests against the
// emulator and fails when this list and those requests differ either way.
// Role definitions live at subscription (or management-group) level in Azure RBAC, so this
// module deploys at subscription scope; the definition grants nothing by itself, and its
// assignableScopes limit it to the resource groups of the target clusters. The assignments are
// made per cluster, at the cluster's own scope (cluster-access.bicep).
targetScope = 'subscription'

param roleName string
param assignableScopes array

// The AKS operations the app performs, with the SDK call each one serves.
var agentPoolOperatorActions = [
  'Microsoft.ContainerService/managedClusters/read' // managed_clusters.get: version, pools, upgrade state
  'Microsoft.ContainerService/managedClusters/listClusterUserCredential/action' // kubeconfig (server + CA) for the Kubernetes API
  'Microsoft.ContainerService/managedClusters/maintenanceConfigurations/read' // maintenance_configurations.list_by_managed_cluster: windows
  'Microsoft.ContainerService/managedClusters/agentPools/read' // agent_pools.get / list
  'Microsoft.ContainerService/managedClusters/agentPools/write' // agent_pools.begin_create_or_update: upgrade, surge settings, green pool
  'Microsoft.ContainerService/managedClusters/agentPools/delete' // agent_pools.begin_delete: blue or green pool at commit / rollback
  'Microsoft.ContainerService/managedClusters/agentPools/upgradeProfiles/read' // agent_pools.get_upgrade_profile
  'Microsoft.ContainerService/managedClusters/agentPools/deleteMachines/action' // agent_pools.begin_delete_machines: quarantined node
  'Microsoft.ContainerService/managedClusters/agentPools/upgradeNodeImageVersion/action' // agent_pools.begin_upgrade_node_image_version: node-image-only upgrade
]

resource agentPoolOperatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleName)
  properties: {
    roleName: roleName
    description: 'AKS node upgrade automation: read clusters, manage agent pools and their upgrades, read the user kubeconfig. Nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: agentPoolOperatorActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

// The role's GUID: an assignment in another subscription refers to it under that subscription.
output roleGuid string = agentPoolOperatorRole.name

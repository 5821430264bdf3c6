// Custom role for clusters with Azure RBAC for Kubernetes authorization: exactly the Kubernetes
// data actions the app's requests need, no more. On such clusters AKS authorizes every Kubernetes
// request of an Entra ID principal against Azure role assignments (the ClusterRoleBinding in
// k8s/ has no effect there). Each request maps to one data action:
//   Microsoft.ContainerService/managedClusters/[<API group>/]<resource>/(read|write|delete)
// (get/list/watch -> read; create/update/patch -> write; delete -> delete; a subresource counts as
// its resource, so creating pods/eviction needs pods/write). tests/integration/test_kube_rbac.py
// derives the list from the adapter's real requests and fails if this one differs.
targetScope = 'subscription'

param roleName string
param assignableScopes array

var kubernetesDataActions = [
  'Microsoft.ContainerService/managedClusters/nodes/read' // list/get nodes: versions, cordoned nodes
  'Microsoft.ContainerService/managedClusters/nodes/write' // patch nodes: cordon, uncordon, quarantine label
  'Microsoft.ContainerService/managedClusters/pods/read' // list/get pods: a node's pods, a workload's pods
  'Microsoft.ContainerService/managedClusters/pods/write' // create pods/eviction: the drain (no finer action exists)
  'Microsoft.ContainerService/managedClusters/pods/delete' // delete a blocking pod (remediation delete-pod)
  'Microsoft.ContainerService/managedClusters/events/read' // list events: AKS surge / drain / upgrade progress
  'Microsoft.ContainerService/managedClusters/policy/poddisruptionbudgets/read' // list/get PDBs: blocked drains
  'Microsoft.ContainerService/managedClusters/policy/poddisruptionbudgets/write' // patch a PDB: relax and restore
  'Microsoft.ContainerService/managedClusters/apps/deployments/read' // blue-green: workloads and their readiness
  'Microsoft.ContainerService/managedClusters/apps/replicasets/read'
  'Microsoft.ContainerService/managedClusters/apps/statefulsets/read'
  'Microsoft.ContainerService/managedClusters/apps/deployments/write' // update deployments/scale: remediation scale-out (no finer action exists)
  'Microsoft.ContainerService/managedClusters/apps/replicasets/write' // update replicasets/scale: remediation scale-out
  'Microsoft.ContainerService/managedClusters/apps/statefulsets/write' // update statefulsets/scale: remediation scale-out
  'Microsoft.ContainerService/managedClusters/autoscaling/horizontalpodautoscalers/read' // scale-out: is the workload autoscaled
  'Microsoft.ContainerService/managedClusters/autoscaling/horizontalpodautoscalers/write' // scale-out: raise and restore its minReplicas
  'Microsoft.ContainerService/managedClusters/persistentvolumeclaims/read' // scale-out: claims a StatefulSet kept
  'Microsoft.ContainerService/managedClusters/apps/daemonsets/read' // drain: is a DaemonSet pod orphaned
]

resource kubernetesDataRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleName)
  properties: {
    roleName: roleName
    description: 'AKS node upgrade automation on clusters with Azure RBAC for Kubernetes authorization: read nodes, pods, events, PDBs and workloads; cordon and label nodes, evict and delete pods, patch PDBs, scale the Deployment, ReplicaSet or StatefulSet of a blocked workload (or raise the bounds of its HorizontalPodAutoscaler). Nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: kubernetesDataActions
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

output roleGuid string = kubernetesDataRole.name

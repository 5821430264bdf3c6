// Custom role with exactly the Fleet Manager (ARM) actions the app calls to approve update-run
// gates, no more: tests/integration/test_fleet_role.py derives them from the Fleet adapter's real
// requests against the emulator and fails when this list and those requests differ either way.
// Deployed only when a Fleet is configured (main.bicep's fleetId); assigned at the Fleet's own
// scope (fleet-access.bicep). Role definitions live at subscription level, hence the scope.
targetScope = 'subscription'

param roleName string
param assignableScopes array

// The Fleet operations the app performs, with the SDK call each one serves.
var fleetGateActions = [
  'Microsoft.ContainerService/fleets/gates/read' // gates.get: the gate's state, target and eTag
  'Microsoft.ContainerService/fleets/gates/write' // gates.begin_update: state Completed when the health gate holds
  'Microsoft.ContainerService/fleets/updateRuns/read' // update_runs.get: the member clusters of the gate's stage or group
]

resource fleetGateRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleName)
  properties: {
    roleName: roleName
    description: 'AKS node upgrade automation: read Fleet Manager update runs and gates, complete a gate. Nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: fleetGateActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

output roleGuid string = fleetGateRole.name

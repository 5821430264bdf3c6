// Links the app's VNet to a private cluster's private DNS zone (privatelink.<region>.azmk8s.io or
// the cluster's custom zone), so the app resolves the private API server's name. Deployed into
// the zone's resource group.

param zoneName string
param vnetId string
param linkName string

resource zone 'Microsoft.Network/privateDnsZones@2024-06-01' existing = {
  name: zoneName
}

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: zone
  name: linkName
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}

// Optional outbound networking of the Flex Consumption app: a VNet with one subnet delegated to
// Flex (Microsoft.App/environments) for VNet integration, so the app reaches private AKS API
// servers; and, optionally, a NAT gateway with a static public IP on that subnet, so every call
// the app makes leaves from one fixed address (for clusters with authorized IP ranges).

param name string
param location string
param tags object
param addressPrefix string
param subnetPrefix string
param natGateway bool

resource outboundIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (natGateway) {
  name: 'pip-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource nat 'Microsoft.Network/natGateways@2024-05-01' = if (natGateway) {
  name: 'ng-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 10
    publicIpAddresses: [
      {
        id: outboundIp.id
      }
    ]
  }
}

// Outbound only: the default rules, nothing inbound reaches the delegated subnet.
resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'snet-app'
        properties: {
          addressPrefix: subnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          natGateway: natGateway ? {
            id: nat.id
          } : null
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }
}

output vnetId string = vnet.id
output subnetId string = vnet.properties.subnets[0].id
output outboundIp string = natGateway ? outboundIp.properties.ipAddress : ''

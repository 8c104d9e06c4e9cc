// Container Apps environment (consumption plan) sending console and system logs to Log Analytics.
// The workspace key is read inside this deployment and passed straight to the environment:
// it is not a parameter, not an output and never seen by whoever deploys.

@description('Name of the Container Apps environment.')
param name string

@description('Azure region of the environment.')
param location string

@description('Tags applied to the environment.')
param tags object = {}

@description('Name of the Log Analytics workspace (same resource group) that receives the logs.')
param logAnalyticsWorkspaceName string

@description('Spread the environment over availability zones (needs a virtual network; off here).')
param zoneRedundant bool = false

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsWorkspaceName
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
    zoneRedundant: zoneRedundant
    peerTrafficConfiguration: {
      encryption: {
        enabled: true
      }
    }
  }
}

@description('Resource id of the environment.')
output id string = environment.id

@description('Name of the environment.')
output name string = environment.name

@description('Default domain of the environment.')
output defaultDomain string = environment.properties.defaultDomain

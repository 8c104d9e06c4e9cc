// Azure Container Registry that azd (or `az acr build`) pushes the service image to, and AcrPull for
// the service's managed identity so the Container App pulls without a password.

@description('Name of the registry: 5-50 letters and digits, globally unique.')
@minLength(5)
@maxLength(50)
param name string

@description('Azure region of the registry.')
param location string

@description('Tags applied to the registry.')
param tags object = {}

@description('Registry tier. Basic is enough for one service; Premium adds private endpoints and geo-replication.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param registrySku string = 'Basic'

@description('Object (principal) id of the identity that pulls the image.')
param pullPrincipalId string

// AcrPull (built-in role): pull images, nothing else.
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: registrySku
  }
  properties: {
    adminUserEnabled: false
    publicNetworkAccess: 'Enabled'
    zoneRedundancy: 'Disabled'
  }
}

resource pull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, pullPrincipalId, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: pullPrincipalId
    principalType: 'ServicePrincipal'
    description: 'dicomlake service: pull its image'
  }
}

@description('Name of the registry.')
output name string = registry.name

@description('Login server of the registry, e.g. crexample.azurecr.io.')
output loginServer string = registry.properties.loginServer

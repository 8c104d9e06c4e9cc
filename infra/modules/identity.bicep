// User-assigned managed identity of the service: the only principal it authenticates as,
// to storage (RBAC on the container), to PostgreSQL (Microsoft Entra) and to the registry (AcrPull).

@description('Name of the user-assigned managed identity; it is also the PostgreSQL role name of the service.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity, attached to the Container App.')
output id string = identity.id

@description('Name of the identity (the PostgreSQL principal name and DICOM_DATABASE_USER).')
output name string = identity.name

@description('Client id of the identity (AZURE_CLIENT_ID of the service).')
output clientId string = identity.properties.clientId

@description('Object (principal) id of the identity, the assignee of every role assignment.')
output principalId string = identity.properties.principalId

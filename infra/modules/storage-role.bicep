// Grants the service's managed identity Storage Blob Data Contributor on the one container it uses
// (least privilege: not the account, not the resource group). Deployed into the resource group
// that holds the storage account, which may be the customer's own.

@description('Name of the storage account that holds the container.')
param accountName string

@description('Name of the container (file system) the service reads and writes.')
param containerName string

@description('Object (principal) id of the service\'s user-assigned managed identity.')
param principalId string

// Storage Blob Data Contributor (built-in role): read, write and delete blobs; no management plane.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

resource containerDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, storageBlobDataContributorRoleId)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'dicomlake service: read and write DICOM data in this container'
  }
}

@description('Resource id of the role assignment.')
output roleAssignmentId string = containerDataContributor.id

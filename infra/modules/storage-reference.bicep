// Looks up the storage account and container the service uses, new or the customer's own, in
// whichever resource group holds them, and returns the values the service is configured with.
// Referencing the container makes the deployment fail early if it does not exist.

@description('Name of the storage account (Data Lake Storage Gen2, hierarchical namespace enabled).')
param accountName string

@description('Name of the container (file system) that holds the data.')
param containerName string

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

@description('Name of the storage account.')
output accountName string = account.name

@description('Blob endpoint of the account, https://<account>.blob.core.windows.net (DICOM_STORAGE_ACCOUNT_URL).')
output blobEndpoint string = 'https://${account.name}.blob.${environment().suffixes.storage}'

@description('Resource id of the container: the scope of the service\'s data role.')
output containerId string = container.id

@description('Whether the account has a hierarchical namespace (Data Lake Storage Gen2); the service needs it.')
output isHnsEnabled bool = (account.properties.?isHnsEnabled) ?? false

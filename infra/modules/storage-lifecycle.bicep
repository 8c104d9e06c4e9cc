// Lifecycle management for the service's data: block blobs under
// {container}/AHDS/{workspace}/dicom/{service}/ move to the Cool tier after N days without
// modification and, optionally, to Cold after M. Never Archive (the service cannot read archived
// blobs without a rehydration it does not perform) and never delete (the service owns deletion).
// Note: an account has one lifecycle policy; deploying this replaces any existing policy.

@description('Name of the storage account.')
param accountName string

@description('Name of the container (file system) that holds the data.')
param containerName string

@description('Workspace segment of the data path, as DICOM_WORKSPACE.')
param workspace string

@description('Service segment of the data path, as DICOM_SERVICE_NAME.')
param serviceName string

@description('Days after the last modification before a blob moves to Cool.')
@minValue(1)
param coolAfterDays int

@description('Days after the last modification before a blob moves to Cold; 0 keeps blobs in Cool.')
@minValue(0)
param coldAfterDays int = 0

var toCool = {
  tierToCool: {
    daysAfterModificationGreaterThan: coolAfterDays
  }
}

var toCold = (coldAfterDays > 0) ? {
  tierToCold: {
    daysAfterModificationGreaterThan: coldAfterDays
  }
} : {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'dicomlake-tiering'
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/AHDS/${workspace}/dicom/${serviceName}/'
              ]
            }
            actions: {
              baseBlob: union(toCool, toCold)
            }
          }
        }
      ]
    }
  }
}

@description('Resource id of the lifecycle policy.')
output policyId string = lifecycle.id

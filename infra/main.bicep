// dicomlake on Azure: one deployment creates the resource group and everything the service needs,
// pointed at a new Data Lake Storage Gen2 account or at one the customer already owns.
//
// Subscription scope (as azd expects): the deployment creates the service's resource group, and can
// still reach a customer's storage account in any other resource group (or subscription) through
// modules scoped there. No secret is a parameter or an output: the service signs in to storage,
// PostgreSQL and the registry with its user-assigned managed identity.
targetScope = 'subscription'

// ---- environment ---------------------------------------------------------------------------------

@description('Name of the environment (azd: AZURE_ENV_NAME); seeds resource names and the azd-env-name tag.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region for every new resource (azd: AZURE_LOCATION).')
@minLength(1)
param location string

@description('Name of the resource group to create for the service. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

// ---- storage: a new account, or bring your own ----------------------------------------------------

@description('Name of the customer\'s existing storage account (hierarchical namespace enabled) to use. Empty: create a new account.')
param existingStorageAccountName string = ''

@description('Resource group of the existing storage account. Empty: the service\'s resource group.')
param existingStorageResourceGroupName string = ''

@description('Subscription id of the existing storage account. Empty: this deployment\'s subscription.')
param existingStorageSubscriptionId string = ''

@description('Name of a new storage account (3-24 lowercase letters and digits). Empty: a generated name.')
param storageAccountName string = ''

@description('Replication of a new storage account: Standard_GRS (default, geo-redundant everywhere), Standard_GZRS where the region has zones, Standard_LRS for tests.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_GRS'

@description('Container (file system) that holds the data (DICOM_STORAGE_CONTAINER). Created in a new account; must already exist in an existing one.')
@minLength(3)
@maxLength(63)
param storageContainerName string = 'dicom'

@description('Grant the service Storage Blob Data Contributor on the container. Set false when the lake\'s owner grants it separately (see docs/deploy.md).')
param assignStorageRole bool = true

@description('Lifecycle policy: days after the last modification before the service\'s blobs move to Cool. 0: no lifecycle policy (it would replace an existing account\'s policy).')
@minValue(0)
param lifecycleCoolAfterDays int = 0

@description('Lifecycle policy: days after the last modification before the service\'s blobs move to Cold (greater than the Cool days). 0: stay in Cool. Never Archive, never delete.')
@minValue(0)
param lifecycleColdAfterDays int = 0

// ---- service ----------------------------------------------------------------------------------------

@description('Workspace segment of the data path AHDS/{workspace}/dicom/{service}/ (DICOM_WORKSPACE).')
param dicomWorkspace string = 'workspace'

@description('Service segment of the data path AHDS/{workspace}/dicom/{service}/ (DICOM_SERVICE_NAME).')
param dicomServiceName string = 'dicom'

@description('Behaviour profile (DICOM_COMPATIBILITY): standard (DICOM PS3.18) or azure (Azure DICOM service v2).')
@allowed([
  'standard'
  'azure'
])
param dicomCompatibility string = 'standard'

@description('Log level of the service (DICOM_LOG_LEVEL).')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('Image to run, e.g. crexample.azurecr.io/dicomlake:1.0 (azd: SERVICE_DICOMLAKE_IMAGE_NAME). Empty: a placeholder scaled to zero until the image is deployed.')
param serviceImage string = ''

@description('CPU cores per replica (consumption plan): 0.25 to 2.0 in steps of 0.25.')
@allowed([
  '0.25'
  '0.5'
  '0.75'
  '1.0'
  '1.25'
  '1.5'
  '1.75'
  '2.0'
])
param containerCpu string = '1.0'

@description('Memory per replica, twice the CPU cores in GiB (e.g. 2Gi for 1.0).')
param containerMemory string = '2Gi'

@description('Replicas that always run; 0 lets the service scale to zero when idle.')
@minValue(0)
@maxValue(300)
param minReplicas int = 1

@description('Most replicas the service scales out to.')
@minValue(1)
@maxValue(300)
param maxReplicas int = 5

@description('Concurrent HTTP requests per replica before another replica is added.')
@minValue(1)
param concurrentRequestsPerReplica int = 50

// ---- authentication (Microsoft Entra ID; see docs/security.md) -------------------------------------

@description('Require a Microsoft Entra ID bearer token on every DICOMweb route (DICOM_AUTH_ENABLED). Keep true in Azure.')
param authEnabled bool = true

@description('Tenant whose tokens are accepted (DICOM_AUTH_TENANT_ID). Empty: the deployment\'s tenant.')
param authTenantId string = ''

@description('Audience of the service\'s app registration, e.g. api://dicomlake or its client id; comma-separated for several (DICOM_AUTH_AUDIENCE).')
@minLength(1)
param authAudience string

@description('Extra app roles mapped to actions, Role=action[,action];... (DICOM_AUTH_ROLE_MAP). Empty: only DICOM Data Reader and DICOM Data Owner.')
param authRoleMap string = ''

// ---- PostgreSQL -------------------------------------------------------------------------------------

@description('Database the service uses (DICOM_DATABASE_NAME).')
param databaseName string = 'dicomlake'

@description('PostgreSQL major version.')
@allowed([
  '14'
  '15'
  '16'
])
param postgresVersion string = '16'

@description('PostgreSQL compute size, e.g. Standard_B1ms (Burstable) or Standard_D2ds_v5 (GeneralPurpose).')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL compute tier matching postgresSkuName.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

@description('PostgreSQL storage in GiB; it grows automatically.')
@minValue(32)
param postgresStorageSizeGB int = 32

@description('PostgreSQL high availability: Disabled, or ZoneRedundant (not on Burstable).')
@allowed([
  'Disabled'
  'ZoneRedundant'
])
param postgresHighAvailabilityMode string = 'Disabled'

@description('Days PostgreSQL backups are kept, 7-35.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

@description('Database connections per replica (DICOM_DATABASE_POOL_MAX); keep replicas x this under the server\'s limit.')
@minValue(2)
@maxValue(200)
param databasePoolMax int = 10

// ---- names --------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'dicomlake'
}
var serviceResourceGroupName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var bringYourOwnStorage = !empty(existingStorageAccountName)
var newStorageAccountName = empty(storageAccountName) ? 'stdicom${resourceToken}' : storageAccountName
var storageAccountNameInUse = bringYourOwnStorage ? existingStorageAccountName : newStorageAccountName
var storageResourceGroupName = (bringYourOwnStorage && !empty(existingStorageResourceGroupName)) ? existingStorageResourceGroupName : serviceResourceGroupName
var storageSubscriptionId = (bringYourOwnStorage && !empty(existingStorageSubscriptionId)) ? existingStorageSubscriptionId : subscription().subscriptionId

// ---- resources ---------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: serviceResourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'dicomlake-identity'
  scope: rg
  params: {
    name: 'id-dicomlake-${resourceToken}'
    location: location
    tags: tags
  }
}

module storageAccount 'modules/storage-account.bicep' = if (!bringYourOwnStorage) {
  name: 'dicomlake-storage-account'
  scope: rg
  params: {
    name: newStorageAccountName
    location: location
    tags: tags
    containerName: storageContainerName
    replication: storageSkuName
  }
}

module storage 'modules/storage-reference.bicep' = {
  name: 'dicomlake-storage-${resourceToken}'
  scope: resourceGroup(storageSubscriptionId, storageResourceGroupName)
  params: {
    accountName: storageAccountNameInUse
    containerName: storageContainerName
  }
  dependsOn: [
    rg
    storageAccount
  ]
}

module storageRole 'modules/storage-role.bicep' = if (assignStorageRole) {
  name: 'dicomlake-storage-role-${resourceToken}'
  scope: resourceGroup(storageSubscriptionId, storageResourceGroupName)
  params: {
    accountName: storage.outputs.accountName
    containerName: storageContainerName
    principalId: identity.outputs.principalId
  }
}

module storageLifecycle 'modules/storage-lifecycle.bicep' = if (lifecycleCoolAfterDays > 0) {
  name: 'dicomlake-storage-lifecycle-${resourceToken}'
  scope: resourceGroup(storageSubscriptionId, storageResourceGroupName)
  params: {
    accountName: storage.outputs.accountName
    containerName: storageContainerName
    workspace: dicomWorkspace
    serviceName: dicomServiceName
    coolAfterDays: lifecycleCoolAfterDays
    coldAfterDays: lifecycleColdAfterDays
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'dicomlake-monitoring'
  scope: rg
  params: {
    name: 'log-${resourceToken}'
    location: location
    tags: tags
  }
}

module registry 'modules/registry.bicep' = {
  name: 'dicomlake-registry'
  scope: rg
  params: {
    name: 'cr${resourceToken}'
    location: location
    tags: tags
    pullPrincipalId: identity.outputs.principalId
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'dicomlake-postgres'
  scope: rg
  params: {
    name: 'psql-${resourceToken}'
    location: location
    tags: tags
    version: postgresVersion
    computeSku: postgresSkuName
    computeTier: postgresSkuTier
    storageSizeGB: postgresStorageSizeGB
    highAvailabilityMode: postgresHighAvailabilityMode
    backupRetentionDays: postgresBackupRetentionDays
    databaseName: databaseName
    principalId: identity.outputs.principalId
    principalName: identity.outputs.name
  }
}

module containerAppsEnvironment 'modules/container-apps-environment.bicep' = {
  name: 'dicomlake-container-apps-environment'
  scope: rg
  params: {
    name: 'cae-${resourceToken}'
    location: location
    tags: tags
    logAnalyticsWorkspaceName: monitoring.outputs.name
  }
}

module app 'modules/container-app.bicep' = {
  name: 'dicomlake-app'
  scope: rg
  params: {
    name: 'ca-dicomlake-${resourceToken}'
    location: location
    tags: union(tags, {
      'azd-service-name': 'dicomlake'
    })
    environmentId: containerAppsEnvironment.outputs.id
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    registryLoginServer: registry.outputs.loginServer
    image: serviceImage
    cpu: containerCpu
    memory: containerMemory
    minReplicas: minReplicas
    maxReplicas: maxReplicas
    concurrentRequests: concurrentRequestsPerReplica
    storageAccountUrl: storage.outputs.blobEndpoint
    storageContainer: storageContainerName
    workspace: dicomWorkspace
    serviceName: dicomServiceName
    databaseHost: postgres.outputs.host
    databaseName: postgres.outputs.databaseName
    databaseUser: identity.outputs.name
    databasePoolMax: databasePoolMax
    logLevel: logLevel
    compatibility: dicomCompatibility
    authEnabled: authEnabled
    authTenantId: empty(authTenantId) ? tenant().tenantId : authTenantId
    authAudience: authAudience
    authRoleMap: authRoleMap
  }
  dependsOn: [
    storageRole
  ]
}

// ---- outputs (azd stores them in .azure/<env>/.env; none is a secret) ------------------------------

@description('Region of the deployment.')
output AZURE_LOCATION string = location

@description('Tenant of the deployment.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Resource group of the service.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('Registry azd pushes the image to.')
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer

@description('Name of that registry.')
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name

@description('Container Apps environment of the service.')
output AZURE_CONTAINER_ENVIRONMENT_NAME string = containerAppsEnvironment.outputs.name

@description('Name of the Container App (azd service dicomlake).')
output SERVICE_DICOMLAKE_NAME string = app.outputs.name

@description('HTTPS URL of the service.')
output SERVICE_DICOMLAKE_URI string = app.outputs.uri

@description('Client id of the service\'s managed identity (its AZURE_CLIENT_ID).')
output DICOM_IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Object (principal) id of the service\'s managed identity: the assignee for a role granted by the lake\'s owner.')
output DICOM_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Blob endpoint of the storage account in use.')
output DICOM_STORAGE_ACCOUNT_URL string = storage.outputs.blobEndpoint

@description('Resource id of the container in use: the scope of the service\'s data role.')
output DICOM_STORAGE_CONTAINER_ID string = storage.outputs.containerId

@description('Whether the storage account has a hierarchical namespace (must be true).')
output DICOM_STORAGE_IS_HNS_ENABLED bool = storage.outputs.isHnsEnabled

@description('PostgreSQL host of the service.')
output DICOM_DATABASE_HOST string = postgres.outputs.host

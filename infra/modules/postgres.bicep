// Azure Database for PostgreSQL flexible server with Microsoft Entra authentication only: password
// authentication is disabled and no administrator password exists. The service's managed identity
// is registered as the server's Entra principal; its PostgreSQL role name is the identity's name.

@description('Name of the server: 3-63 lowercase letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(63)
param name string

@description('Azure region of the server.')
param location string

@description('Tags applied to the server.')
param tags object = {}

@description('PostgreSQL major version.')
@allowed([
  '14'
  '15'
  '16'
])
param version string = '16'

@description('Compute size, e.g. Standard_B1ms (Burstable), Standard_D2ds_v5 (GeneralPurpose).')
param computeSku string = 'Standard_B1ms'

@description('Compute tier matching computeSku.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param computeTier string = 'Burstable'

@description('Storage size in GiB (32, 64, 128, 256, 512, 1024, ...); it grows automatically.')
@minValue(32)
param storageSizeGB int = 32

@description('High availability: Disabled, or ZoneRedundant (GeneralPurpose or MemoryOptimized tier only).')
@allowed([
  'Disabled'
  'ZoneRedundant'
])
param highAvailabilityMode string = 'Disabled'

@description('Days backups are kept, 7-35.')
@minValue(7)
@maxValue(35)
param backupRetentionDays int = 7

@description('Name of the database the service uses (DICOM_DATABASE_NAME).')
param databaseName string

@description('Object (principal) id of the service\'s managed identity.')
param principalId string

@description('Name of the service\'s managed identity: its PostgreSQL role name (DICOM_DATABASE_USER).')
param principalName string

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: computeSku
    tier: computeTier
  }
  properties: {
    version: version
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: tenant().tenantId
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: highAvailabilityMode
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

// Container Apps on the consumption plan without a virtual network have no fixed outbound
// addresses: admit Azure-internal addresses only (0.0.0.0 is Azure's convention for that).
// Every connection still needs a Microsoft Entra token for a registered principal, over TLS.
resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource requireTls 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'require_secure_transport'
  properties: {
    value: 'on'
    source: 'user-override'
  }
  dependsOn: [
    allowAzure
  ]
}

// The extensions the service's migrations create (CREATE EXTENSION in service/dicomlake/index/
// migrations): Azure allows only allow-listed ones. Server parameters are set one after another.
resource allowExtensions 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'azure.extensions'
  properties: {
    value: 'pg_trgm,unaccent'
    source: 'user-override'
  }
  dependsOn: [
    requireTls
  ]
}

resource administrator 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: principalId
  properties: {
    principalName: principalName
    principalType: 'ServicePrincipal'
    tenantId: tenant().tenantId
  }
  dependsOn: [
    allowExtensions
  ]
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    administrator
  ]
}

@description('Name of the server.')
output name string = server.name

@description('Host name of the server (DICOM_DATABASE_HOST).')
output host string = server.properties.fullyQualifiedDomainName

@description('Name of the database (DICOM_DATABASE_NAME).')
output databaseName string = database.name

// The dicomlake Container App: the image from the registry (pulled with the managed identity),
// the service's settings as environment variables (names as in docs/configuration.md, no secret:
// storage and PostgreSQL are reached with the managed identity), health probes, HTTPS-only ingress
// and HTTP-concurrency scaling.

@description('Name of the Container App.')
param name string

@description('Azure region of the app.')
param location string

@description('Tags applied to the app; azd finds the app by its azd-service-name tag.')
param tags object = {}

@description('Resource id of the Container Apps environment.')
param environmentId string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID).')
param identityClientId string

@description('Login server of the registry the image is pulled from.')
param registryLoginServer string

@description('Full image reference, e.g. crexample.azurecr.io/dicomlake:1.0. Empty: a placeholder until azd deploys.')
param image string = ''

@description('CPU cores per replica: 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 or 2.0 (consumption plan).')
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
param cpu string = '1.0'

@description('Memory per replica, twice the CPU cores in GiB, e.g. 2Gi for 1.0 core.')
param memory string = '2Gi'

@description('Replicas that always run (0 lets the app scale to zero when idle).')
@minValue(0)
@maxValue(300)
param minReplicas int = 1

@description('Most replicas the app scales out to.')
@minValue(1)
@maxValue(300)
param maxReplicas int = 5

@description('Concurrent HTTP requests per replica before another replica is added.')
@minValue(1)
param concurrentRequests int = 50

@description('Blob endpoint of the storage account (DICOM_STORAGE_ACCOUNT_URL).')
param storageAccountUrl string

@description('Container (file system) that holds the data (DICOM_STORAGE_CONTAINER).')
param storageContainer string

@description('Workspace segment of the data path (DICOM_WORKSPACE).')
param workspace string

@description('Service segment of the data path (DICOM_SERVICE_NAME).')
param serviceName string

@description('PostgreSQL host name (DICOM_DATABASE_HOST).')
param databaseHost string

@description('PostgreSQL database name (DICOM_DATABASE_NAME).')
param databaseName string

@description('PostgreSQL role of the managed identity, the identity\'s name (DICOM_DATABASE_USER).')
param databaseUser string

@description('Database connections per replica (DICOM_DATABASE_POOL_MAX).')
@minValue(2)
@maxValue(200)
param databasePoolMax int = 10

@description('Log level (DICOM_LOG_LEVEL).')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('Behaviour profile (DICOM_COMPATIBILITY): standard (DICOM PS3.18) or azure (Azure DICOM service v2).')
@allowed([
  'standard'
  'azure'
])
param compatibility string = 'standard'

@description('Require a Microsoft Entra ID bearer token (DICOM_AUTH_ENABLED).')
param authEnabled bool = true

@description('Tenant whose tokens are accepted (DICOM_AUTH_TENANT_ID).')
param authTenantId string

@description('Accepted token audiences, comma-separated (DICOM_AUTH_AUDIENCE).')
param authAudience string

@description('Extra app roles, Role=action[,action];... (DICOM_AUTH_ROLE_MAP).')
param authRoleMap string = ''

// Until azd (or the operator) deploys the real image, run a public placeholder scaled to zero:
// it cannot answer the service's health probes, so no replica of it is kept running.
var placeholderImage = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'
var usePlaceholder = empty(image)

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: environmentId
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 8080
        transport: 'auto'
        allowInsecure: false
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      registries: [
        {
          server: registryLoginServer
          identity: identityId
        }
      ]
    }
    template: {
      terminationGracePeriodSeconds: 40
      containers: [
        {
          name: 'dicomlake'
          image: usePlaceholder ? placeholderImage : image
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: [
            {
              name: 'DICOM_STORAGE_ACCOUNT_URL'
              value: storageAccountUrl
            }
            {
              name: 'DICOM_STORAGE_CONTAINER'
              value: storageContainer
            }
            {
              name: 'DICOM_WORKSPACE'
              value: workspace
            }
            {
              name: 'DICOM_SERVICE_NAME'
              value: serviceName
            }
            {
              name: 'DICOM_DATABASE_HOST'
              value: databaseHost
            }
            {
              name: 'DICOM_DATABASE_PORT'
              value: '5432'
            }
            {
              name: 'DICOM_DATABASE_NAME'
              value: databaseName
            }
            {
              name: 'DICOM_DATABASE_USER'
              value: databaseUser
            }
            {
              name: 'DICOM_DATABASE_SSLMODE'
              value: 'require'
            }
            {
              name: 'DICOM_DATABASE_POOL_MAX'
              value: string(databasePoolMax)
            }
            {
              name: 'DICOM_HOST'
              value: '0.0.0.0'
            }
            {
              name: 'DICOM_PORT'
              value: '8080'
            }
            {
              name: 'DICOM_LOG_LEVEL'
              value: logLevel
            }
            {
              name: 'DICOM_COMPATIBILITY'
              value: compatibility
            }
            {
              name: 'AZURE_CLIENT_ID'
              value: identityClientId
            }
            {
              name: 'DICOM_AUTH_ENABLED'
              value: string(authEnabled)
            }
            {
              name: 'DICOM_AUTH_TENANT_ID'
              value: authTenantId
            }
            {
              name: 'DICOM_AUTH_AUDIENCE'
              value: authAudience
            }
            {
              name: 'DICOM_AUTH_ROLE_MAP'
              value: authRoleMap
            }
            {
              name: 'DICOM_AUDIT_LOG'
              value: 'stderr'
            }
          ]
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/health/ready'
                port: 8080
                scheme: 'HTTP'
              }
              initialDelaySeconds: 5
              periodSeconds: 20
              timeoutSeconds: 5
              failureThreshold: 10
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/health/live'
                port: 8080
                scheme: 'HTTP'
              }
              periodSeconds: 15
              timeoutSeconds: 5
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/health/ready'
                port: 8080
                scheme: 'HTTP'
              }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
              successThreshold: 1
            }
          ]
        }
      ]
      scale: {
        minReplicas: usePlaceholder ? 0 : minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

@description('Name of the Container App.')
output name string = app.name

@description('HTTPS URL of the service.')
output uri string = 'https://${app.properties.configuration.ingress.fqdn}'

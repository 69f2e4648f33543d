// Log Analytics workspace and a workspace-based Application Insights component.
// The function app sends telemetry through APPLICATIONINSIGHTS_CONNECTION_STRING (see functionapp.bicep).

@description('Azure region for the monitoring resources.')
param location string

@description('Name of the Log Analytics workspace.')
@minLength(4)
@maxLength(63)
param logAnalyticsName string

@description('Name of the Application Insights component.')
@minLength(1)
@maxLength(260)
param appInsightsName string

@description('How many days Log Analytics keeps data (30-730).')
@minValue(30)
@maxValue(730)
param retentionInDays int = 90

@description('Tags applied to every resource in this module.')
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

@description('Resource ID of the Log Analytics workspace.')
output logAnalyticsWorkspaceId string = workspace.id

@description('Name of the Application Insights component (the function app module reads its connection string).')
output appInsightsComponentName string = appInsights.name

@description('Resource ID of the Application Insights component.')
output appInsightsId string = appInsights.id

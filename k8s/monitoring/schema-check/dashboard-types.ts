// The type a Tau dashboard JSON file must have: @grafana/schema's Dashboard, with each panel's `options` and
// `fieldConfig.defaults.custom` typed by its panel plugin's published option types instead of
// `Record<string, unknown>`. Only the panel types below are accepted; add one here before using it.
import type { Dashboard, FieldConfig, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type * as BarGauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** A type as it is written in JSON: each string enum (ThresholdsMode, MappingType, ...) becomes its values. */
export type AsJson<T> = T extends string
  ? `${T}`
  : T extends readonly (infer Element)[]
    ? AsJson<Element>[]
    : T extends object
      ? { [K in keyof T]: AsJson<T[K]> }
      : T;

/** Every field optional at any depth: Grafana fills a panel plugin's option defaults when it loads a panel. */
type PartialOptions<T> = T extends readonly (infer Element)[]
  ? PartialOptions<Element>[]
  : T extends object
    ? { [K in keyof T]?: PartialOptions<T[K]> }
    : T;

type PluginFieldConfigSource<Custom> = Omit<FieldConfigSource, 'defaults'> & {
  defaults: Omit<FieldConfig, 'custom'> & { custom?: PartialOptions<Custom> };
};

type PluginPanel<Type extends string, Options, Custom> = Omit<Panel, 'type' | 'options' | 'fieldConfig'> & {
  type: Type;
  options?: PartialOptions<Options>;
  fieldConfig?: PluginFieldConfigSource<Custom>;
};

type NoCustomFieldConfig = Record<string, never>;

type TauPanel =
  | PluginPanel<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | PluginPanel<'stat', Stat.Options, NoCustomFieldConfig>
  | PluginPanel<'bargauge', BarGauge.Options, NoCustomFieldConfig>
  | PluginPanel<'table', Table.Options, Table.FieldConfig>;

export type CheckedDashboard = AsJson<Omit<Dashboard, 'panels'> & { panels?: Array<TauPanel | RowPanel> }>;

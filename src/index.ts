/** Public API for embedding Warren. */
export { Broker, type BrokerOptions, StartupError } from './broker.js';
export { type Config, DEFAULTS } from './config.js';

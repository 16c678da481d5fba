/** pgpass (node-postgres's own reader of the libpq password file) ships no typings. */
declare module 'pgpass' {
  function pgpass(
    connInfo: { host?: string; port?: number; database?: string; user?: string },
    callback: (password: string | undefined) => void,
  ): void;
  export default pgpass;
}

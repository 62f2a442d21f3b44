/** What went wrong (an alert, read out at once) and what was done (a status), for every page alike. */
export function Alerts(props: { error?: string | undefined; notice?: string | undefined }) {
  return (
    <>
      {props.error ? (
        <p role="alert" class="error">
          {props.error}
        </p>
      ) : null}
      {props.notice ? <p role="status">{props.notice}</p> : null}
    </>
  );
}
